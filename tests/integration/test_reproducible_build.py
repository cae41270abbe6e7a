"""The same lock gives the same image ID, and `devenv verify` proves it: real builds on the real engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from devenv.build.builder import BuildResult
from devenv.build.project import Project, build_project, lock_project, open_project
from devenv.build.reproducible import rfc3339
from devenv.build.verify import verified_at
from devenv.lock.lockfile import read_lock
from devenv.lock.models import BaseImage
from devenv.lock.sdists import epoch
from devenv.resources import cache_dir
from devenv.testing.projects import WorkspaceImage, copy_project, copy_template
from harness.devenvd import Devenvd

NAME = "it-repro"


@dataclass
class Built:
    project: Project
    result: BuildResult


# a home of its own: the first `devenv verify` starts its daemon there, which rebuilds on the local engine
HOME = Devenvd(home=Path(tempfile.gettempdir()) / f"dvd-repro-{os.getpid()}")


@pytest.fixture(scope="module", autouse=True)
def _auto_started_daemon() -> Iterator[None]:
    yield
    HOME.cleanup()


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    """`devenv verify DIR` through the real CLI, as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "devenv", "verify", str(directory)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=HOME.env,
        check=False,
    )


@pytest.fixture(scope="module")
def built(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The minimal template (JupyterLab included) locked once and built with no cache: `devenv verify` is
    the second no-cache build, so the two agree only if the same lock gives the same image ID."""
    spec = copy_template("minimal", tmp_path_factory.mktemp("repro"), project_name=NAME)
    project = open_project(spec)
    lock_project(client, project)
    result = build_project(client, project, no_cache=True)
    yield Built(project, result)
    for image in {result.tag, result.image_id}:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)


def test_a_no_cache_build_is_normalised_to_the_locks_time(client: docker.DockerClient, built: Built) -> None:
    assert not built.result.cached and built.result.steps_cached == 0
    image = client.images.get(built.result.tag)
    assert image.id == built.result.image_id
    # the config's time is the lock's resolved_at, and its labels are kept
    assert image.attrs["Created"] == rfc3339(epoch(read_lock(built.project.lock_path).resolved_at))
    assert image.labels["devenv.spec-name"] == NAME
    assert built.result.normalise_seconds < built.result.seconds / 2


def test_verify_rebuilds_with_no_cache_to_the_same_image_id_and_records_it(
    client: docker.DockerClient, built: Built
) -> None:
    step_cache = client.images.get(f"devenv/{NAME}:steps").id
    done = _verify(built.project.directory)
    assert done.returncode == 0, done.stderr
    # a throwaway rebuild: the step cache the next build of these steps reuses is the one it was
    assert client.images.get(f"devenv/{NAME}:steps").id == step_cache
    assert done.stdout.strip() == built.result.image_id  # a second no-cache build, the same ID
    assert verified_at(built.result.image_id) is not None
    # the rebuilt image's temporary tag is gone; the image in use keeps its tag
    assert not temporary_tags(client, NAME) and client.images.get(built.result.tag).id == built.result.image_id


def test_a_renamed_project_gets_the_same_layers_without_normalising_them_again(
    client: docker.DockerClient, built: Built, tmp_path: Path
) -> None:
    """The name is a label, not a build step: the builder gives the renamed project the same image, whose
    normalised layers are remembered; and that remembered path gives the ID a full normalisation gives."""
    renamed = f"{NAME}-renamed"
    folder = tmp_path / "renamed"
    shutil.copytree(built.project.directory, folder)
    spec = folder / "devenv.yaml"
    spec.write_text(spec.read_text().replace(f"name: {NAME}", f"name: {renamed}"))
    project = open_project(spec)
    try:
        quick = build_project(client, project)
        assert not quick.cached, quick  # a new tag: built, every step from the cache (below)
        image = client.images.get(quick.tag)
        assert image.attrs["RootFS"]["Layers"] == client.images.get(built.result.image_id).attrs["RootFS"]["Layers"]
        assert image.labels["devenv.spec-name"] == renamed and quick.image_id != built.result.image_id
        assert quick.normalise_seconds < 5, quick.normalise_seconds  # a config loaded, no layer read
        client.images.remove(quick.tag, force=True)
        for memo in (cache_dir() / "normalised").glob("*.json"):
            memo.unlink()
        again = build_project(client, project)
        assert again.image_id == quick.image_id  # normalised in full: the same ID
        print(f"normalising: remembered {quick.normalise_seconds:.2f}s, in full {again.normalise_seconds:.1f}s")
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(project_tag(client, renamed), force=True)


def project_tag(client: docker.DockerClient, name: str) -> str:
    return next((tag for image in client.images.list(name=f"devenv/{name}") for tag in image.tags), "none")


def test_verify_names_the_layer_and_the_file_that_differ(
    client: docker.DockerClient, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    """The image in use changed after its build (a container's change committed onto its tag); the light
    project (no JupyterLab) keeps verify's no-cache rebuild short."""
    name = f"{NAME}-light"
    project = open_project(copy_project(light_image, tmp_path / "light", name) / "devenv.yaml")
    result = build_project(client, project)
    repository, _, tag = result.tag.rpartition(":")
    try:
        container = client.containers.create(
            result.tag, ["true"], entrypoint=["sh", "-c", "echo tampered > /etc/devenv-tampered"], user="root"
        )
        try:
            container.start()
            container.wait()
            container.commit(repository=repository, tag=tag)
        finally:
            container.remove(force=True)
        layers = len(client.images.get(result.image_id).attrs["RootFS"]["Layers"])
        done = _verify(project.directory)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "verify_mismatch" in done.stderr and "rebuilds" in done.stderr
        assert f"first differing layer: {layers}" in done.stderr and "rebuilt none" in done.stderr
        assert "added etc/devenv-tampered" in done.stderr, done.stderr
        assert not temporary_tags(client, name)
    finally:
        for image in (result.tag, result.image_id):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image, force=True)


def temporary_tags(client: docker.DockerClient, name: str) -> list[str]:
    """The tags `devenv verify` gives its rebuilt images while it compares."""
    return [tag for image in client.images.list(name=f"devenv/{name}") for tag in image.tags if ":verify-" in tag]


def test_verify_without_a_lock_or_an_image_is_a_usage_error(built: Built, tmp_path: Path) -> None:
    copy_template("minimal", tmp_path / "nolock", project_name=NAME)
    done = _verify(tmp_path / "nolock")
    assert done.returncode == 2 and "no devenv.lock" in done.stderr and "devenv build" in done.stderr
    unbuilt = tmp_path / "unbuilt"
    shutil.copytree(built.project.directory, unbuilt)
    spec = unbuilt / "devenv.yaml"
    spec.write_text(spec.read_text().replace(f"name: {NAME}", "name: it-repro-unbuilt"))
    done = _verify(unbuilt)
    assert done.returncode == 2 and "not on this engine" in done.stderr and "devenv build" in done.stderr
