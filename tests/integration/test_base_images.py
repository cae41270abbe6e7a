"""The two paths to a base image, chosen automatically: a pinned upstream from a real registry
(Debian's docker-registry, served on 127.0.0.1 by this test), and debootstrap when none answers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest
import yaml

from devenv.build.base import Recipe, ensure_base, load_recipe
from devenv.build.bootstrap import RECIPE_LABEL
from devenv.errors import BaseImageMissing
from devenv.lock.models import BaseImage
from devenv.progress import ProgressEvent

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry on 127.0.0.1; yields its host:port."""
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("docker-registry did not start")
    yield address
    process.terminate()
    process.wait(timeout=10)


def _recipe_copy(tmp_path: Path, **changes: object) -> Recipe:
    """The shipped cpu recipe in a folder of its own, with recipe.yaml fields changed."""
    directory = tmp_path / "recipe"
    shutil.copytree(load_recipe("cpu").directory, directory)
    data = yaml.safe_load((directory / "recipe.yaml").read_text())
    data.update(changes)
    (directory / "recipe.yaml").write_text(yaml.safe_dump(data))
    recipe = load_recipe("cpu")
    return replace(recipe, directory=directory, upstream=str(data["upstream"]), bootstrap=bool(data["bootstrap"]))


def _untag(client: docker.DockerClient, repository: str) -> None:
    """Drop every reference to `repository` (tags and digests) without deleting shared images."""
    for image in client.images.list():
        for reference in [*image.tags, *image.attrs.get("RepoDigests", [])]:
            if reference.startswith(repository):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(reference, noprune=True)


def _remove(client: docker.DockerClient, tag: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(tag, force=True)


def test_registry_reachable_uses_the_pinned_upstream(
    client: docker.DockerClient, cpu_base: BaseImage, registry: str, tmp_path: Path
) -> None:
    repository = f"{registry}/devenv-test/debian"
    client.images.get(cpu_base.image).tag(repository, "bookworm")
    client.images.push(repository, tag="bookworm")
    digest = next(
        d for d in client.images.get(f"{repository}:bookworm").attrs["RepoDigests"] if d.startswith(registry)
    ).split("@", 1)[1]
    _untag(client, repository)
    recipe = _recipe_copy(tmp_path, upstream=f"{repository}:bookworm@{digest}", bootstrap=False)
    events: list[ProgressEvent] = []
    try:
        made = ensure_base(client, recipe, events.append)
        assert made.source == "registry"
        assert made.image == recipe.image_tag and made.upstream.endswith(digest)
        assert any("pulling" in e.message for e in events)
        assert not any("debootstrap" in e.message for e in events)
        python = client.containers.run(made.image, ["python3", "--version"], remove=True).decode()
        assert python.startswith("Python 3.11")
        assert ensure_base(client, recipe).digest == made.digest  # found, not made again
    finally:
        _remove(client, recipe.image_tag)
        _untag(client, repository)


def test_no_registry_and_no_bootstrap_is_a_clear_error(client: docker.DockerClient, tmp_path: Path) -> None:
    recipe = _recipe_copy(tmp_path, upstream="127.0.0.1:1/nothing/here:1@sha256:" + "0" * 64, bootstrap=False)
    with pytest.raises(BaseImageMissing) as failure:
        ensure_base(client, recipe)
    assert "127.0.0.1:1/nothing/here" in failure.value.message and "docker load" in (failure.value.hint or "")


def test_no_registry_falls_back_to_debootstrap(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path: Path
) -> None:
    recipe = _recipe_copy(tmp_path, upstream="127.0.0.1:1/nothing/here:1@sha256:" + "1" * 64, bootstrap=True)
    events: list[ProgressEvent] = []
    try:
        made = ensure_base(client, recipe, events.append)
        assert made.source == "bootstrap"
        assert any("no registry answered" in e.message and "debootstrap" in e.message for e in events)
        check = "python3 --version && id -u dev && test ! -e /etc/ssh/ssh_host_ed25519_key && command -v tini sshd"
        out = client.containers.run(made.image, ["sh", "-c", check], remove=True).decode()
        assert "Python 3.11" in out and "1000" in out and "/usr/bin/tini" in out
        # the lock gets the package versions, as dpkg inside reports them
        listed = (
            client.containers.run(made.image, ["dpkg-query", "-W", "-f", "${Package}=${Version}\\n"], remove=True)
            .decode()
            .split()
        )
        assert made.packages == dict(item.split("=", 1) for item in listed)
        assert made.packages["python3.11"].startswith("3.11")
        # reproducible: the session's CPU base, bootstrapped earlier (tests/setup.sh) from the same package
        # versions, has the same root file system layer, byte for byte; the configs differ only in the recipe's
        # hash (this copy names another upstream), so everything else in the image is the same too
        assert cpu_base.source == "bootstrap" and cpu_base.packages is not None
        assert made.packages == cpu_base.packages, "the mirror moved between the two bootstraps: run again"
        ours, theirs = client.images.get(made.digest).attrs, client.images.get(cpu_base.digest).attrs
        assert ours["RootFS"]["Layers"] == theirs["RootFS"]["Layers"]
        assert ours["Created"] == theirs["Created"]
        differing = {
            key
            for key in {**ours["Config"]["Labels"], **theirs["Config"]["Labels"]}
            if ours["Config"]["Labels"].get(key) != theirs["Config"]["Labels"].get(key)
        }
        assert differing == {RECIPE_LABEL}
        assert {**ours["Config"], "Labels": None} == {**theirs["Config"], "Labels": None}
    finally:
        _remove(client, recipe.image_tag)
