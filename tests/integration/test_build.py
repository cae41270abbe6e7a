"""Building real images from the shipped templates, offline, on the real engine."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml
from packaging.utils import canonicalize_name

from devenv.build.builder import BuildResult
from devenv.build.plan import BASE_DIGEST_LABEL, IMAGE_HASH_LABEL, LOCK_HASH_LABEL
from devenv.build.project import Project, build_project, lock_project, open_project
from devenv.build.runner import run_once
from devenv.errors import BaseImageMissing, BuildError
from devenv.lock.lockfile import read_lock
from devenv.lock.models import BaseImage, Lock
from devenv.progress import ProgressEvent
from devenv.testing.network import engine_host_address
from devenv.testing.projects import copy_template


@dataclass
class Built:
    project: Project
    lock: Lock
    result: BuildResult
    events: list[ProgressEvent]


def _run(client: docker.DockerClient, image: str, *command: str) -> str:
    """stdout of a command run as `dev` without network (attached, so no output is lost to log timing)."""
    out, err = io.BytesIO(), io.BytesIO()
    code = run_once(client, image, list(command), network=False, out=out, err=err)
    assert code == 0, f"{command} exited {code}: {err.getvalue().decode()}"
    return out.getvalue().decode()


def _build(client: docker.DockerClient, directory: Path, template: str, name: str) -> Built:
    spec_path = copy_template(template, directory, project_name=name)
    subprocess.run(["git", "init", "-q", str(directory)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(directory),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "start",
        ],
        check=True,
    )
    project = open_project(spec_path)
    lock, _ = lock_project(client, project)
    events: list[ProgressEvent] = []
    result = build_project(client, project, events.append)
    return Built(project, lock, result, events)


def _cleanup(client: docker.DockerClient, tag: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(tag, force=True)


def _built_template(template: str, name: str):  # type: ignore[no-untyped-def]
    """A module-scoped fixture: the template locked and built once, its image removed afterwards."""

    @pytest.fixture(scope="module")
    def fixture(
        client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Built]:
        built = _build(client, tmp_path_factory.mktemp(template), template, name)
        yield built
        _cleanup(client, built.result.tag)

    return fixture


minimal = _built_template("minimal", "it-minimal")
sklearn = _built_template("sklearn", "it-sklearn")


def _frozen(client: docker.DockerClient, image: str) -> set[str]:
    lines = _run(client, image, "/opt/venv/bin/pip", "freeze", "--all").split()
    pins = {line for line in lines if "==" in line}
    # pip and setuptools come with the venv (from the base's Debian packages) unless the lock names them
    return {f"{canonicalize_name(n)}=={v}" for n, v in (p.split("==") for p in pins) if n not in ("pip", "setuptools")}


def _locked(lock: Lock) -> set[str]:
    return {f"{canonicalize_name(p.name)}=={p.version}" for p in lock.python if p.name not in ("pip", "setuptools")}


def test_minimal_imports_its_packages_and_pip_freeze_equals_the_lock(
    client: docker.DockerClient, minimal: Built
) -> None:
    assert not minimal.result.cached
    assert "rich" in {p.name for p in minimal.lock.python}
    assert _run(client, minimal.result.tag, "python", "-c", "import rich; print('ok')").strip() == "ok"
    assert _frozen(client, minimal.result.tag) == _locked(minimal.lock)


def test_image_is_tagged_by_content_hash_with_provenance_labels(client: docker.DockerClient, minimal: Built) -> None:
    image = client.images.get(minimal.result.tag)
    labels = image.labels
    assert minimal.result.tag == f"devenv/it-minimal:{labels[IMAGE_HASH_LABEL][:16]}"
    assert labels[LOCK_HASH_LABEL] == minimal.lock.content_hash()
    assert labels[BASE_DIGEST_LABEL] == minimal.lock.base.digest
    head = subprocess.run(
        ["git", "-C", str(minimal.project.directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == head


def test_build_showed_progress_step_by_step(minimal: Built) -> None:
    steps = [e for e in minimal.events if e.kind == "step"]
    assert steps and steps[0].current == 1 and steps[-1].current == steps[-1].total
    assert any(e.kind == "phase" and "network off" in e.message for e in minimal.events)


def test_devenv_tooling_is_the_last_layers(client: docker.DockerClient, minimal: Built) -> None:
    """sshd is key-only, JupyterLab lives in its own venv with the workspace kernel, project code is absent."""
    image = minimal.result.tag
    sshd = _run(client, image, "cat", "/etc/ssh/sshd_config.d/devenv.conf")
    assert "PasswordAuthentication no" in sshd and "KbdInteractiveAuthentication no" in sshd
    kernels = _run(client, image, "/opt/devenv/venv/bin/jupyter", "kernelspec", "list")
    assert "python3" in kernels
    kernel = json.loads(_run(client, image, "cat", "/opt/devenv/venv/share/jupyter/kernels/python3/kernel.json"))
    assert kernel["argv"][0] == "/opt/devenv/bin/python-kernel"  # sources the secrets, then the project's python
    wrapper = _run(client, image, "cat", "/opt/devenv/bin/python-kernel")
    assert "exec /opt/venv/bin/python -m ipykernel_launcher" in wrapper
    assert sorted(_run(client, image, "ls", "-A", "/home/dev").split()) == [".bash_logout", ".bashrc", ".profile"]
    assert _run(client, image, "sh", "-c", "ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l").strip() == "0"


def test_second_build_with_nothing_changed_is_a_tag_lookup(client: docker.DockerClient, minimal: Built) -> None:
    events: list[ProgressEvent] = []
    again = build_project(client, minimal.project, events.append)
    assert again.cached
    assert again.tag == minimal.result.tag and again.image_id == minimal.result.image_id
    assert not [e for e in events if e.kind in ("step", "download")]


def test_relocking_unchanged_inputs_gives_the_same_bytes(client: docker.DockerClient, minimal: Built) -> None:
    before = minimal.project.lock_path.read_bytes()
    lock, changed = lock_project(client, minimal.project)
    assert not changed
    assert minimal.project.lock_path.read_bytes() == before
    assert lock == read_lock(minimal.project.lock_path)


def test_sklearn_with_apt_imports_and_matches_the_lock(client: docker.DockerClient, sklearn: Built) -> None:
    image = sklearn.result.tag
    out = _run(client, image, "python", "-c", "import sklearn, pandas; print(sklearn.__version__)").strip()
    locked = {p.name: p.version for p in sklearn.lock.python}
    assert out == locked["scikit-learn"]
    assert _frozen(client, image) == _locked(sklearn.lock)
    gomp = next(p for p in sklearn.lock.apt if p.name == "libgomp1")
    installed = _run(client, image, "dpkg-query", "-W", "-f", "${Version}", "libgomp1").strip()
    assert installed == gomp.version


def test_one_package_change_reuses_the_base_and_apt_layers(client: docker.DockerClient, sklearn: Built) -> None:
    requirements = sklearn.project.directory / "requirements.in"
    requirements.write_text(requirements.read_text() + "six\n")
    project = open_project(sklearn.project.spec_path)
    lock, changed = lock_project(client, project)
    assert changed and "six" in {p.name for p in lock.python}
    step_cache = sklearn.result.tag.rsplit(":", 1)[0] + ":steps"
    first_steps = client.images.get(step_cache).id  # the first build's own image, its steps' cache
    changed_build = build_project(client, project)
    try:
        # one step cache per image name: the new build's own image replaced the first one, which is gone (a
        # cache per build kept a full copy of every image ever built)
        assert client.images.get(step_cache).id != first_steps
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(first_steps)
        before = client.images.get(sklearn.result.tag).attrs["RootFS"]["Layers"]
        after = client.images.get(changed_build.tag).attrs["RootFS"]["Layers"]
        base_layers = client.images.get(lock.base.image).attrs["RootFS"]["Layers"]
        assert after[: len(base_layers)] == base_layers
        reused = changed_build.cached_instructions
        assert any(step.startswith("COPY debs/") for step in reused), reused
        assert any(step.startswith("RUN dpkg --install") for step in reused), reused
        # the whole tooling stage came from the cache: JupyterLab was not reinstalled
        assert any(step.startswith("COPY tooling/") for step in reused), reused
        assert any("/opt/devenv/venv/bin/pip install" in step for step in reused), reused
        # the Python layer is new (its step may still come from the cache: this engine may have built the same
        # package set before, in an earlier run; the build arguments no longer change with each lock); the layers
        # above it may be byte-identical now that layers are normalised
        assert set(after) - set(before)
    finally:
        _cleanup(client, changed_build.tag)


@contextlib.contextmanager
def _answering_on_the_bridge(client: docker.DockerClient) -> Iterator[str]:
    """An HTTP server on the engine's bridge gateway (this machine's side of docker0): its URL."""
    gateway = engine_host_address(client)

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"reached")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((gateway, 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{gateway}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_build_has_no_network(client: docker.DockerClient, cpu_base: BaseImage, tmp_path: Path) -> None:
    with _answering_on_the_bridge(client) as url:
        reach = f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=10).read())\""
        # positive control: the same step in a build with the engine's default network reaches the server
        dockerfile = f"FROM {cpu_base.image}\nRUN {reach}\n".encode()
        control = client.api.build(
            fileobj=io.BytesIO(dockerfile),
            network_mode="bridge",
            rm=True,
            forcerm=True,
            nocache=True,
            decode=True,
            pull=False,
        )
        said = "".join(chunk.get("stream", "") + chunk.get("error", "") for chunk in control)
        assert "b'reached'" in said, said
        with contextlib.suppress(docker.errors.APIError):  # the control's image, by its last ID line
            for line in said.splitlines()[::-1]:
                if line.startswith("Successfully built "):
                    client.images.remove(line.split()[-1], noprune=False)
                    break
        # devenv's build of a project with that step cannot
        spec_path = copy_template("minimal", tmp_path, project_name="it-offline")
        spec_path.write_text(spec_path.read_text() + yaml.safe_dump({"setup": [reach]}))
        project = open_project(spec_path)
        lock_project(client, project)
        with pytest.raises(BuildError) as failure:
            build_project(client, project)
    text = failure.value.render()
    assert "b'reached'" not in text
    assert "urlopen error" in text or "Network is unreachable" in text, text


def test_a_lock_pinning_another_base_stops_the_build(
    client: docker.DockerClient, minimal: Built, tmp_path: Path
) -> None:
    for name in ("devenv.yaml", "requirements.in", "devenv.lock"):
        (tmp_path / name).write_bytes((minimal.project.directory / name).read_bytes())
    lock_file = tmp_path / "devenv.lock"
    lock_file.write_text(lock_file.read_text().replace(minimal.lock.base.digest, "sha256:" + "e" * 64))
    with pytest.raises(BaseImageMissing) as failure:
        build_project(client, open_project(tmp_path / "devenv.yaml"))
    assert "sha256:" + "e" * 64 in failure.value.message and "devenv lock" in (failure.value.hint or "")
