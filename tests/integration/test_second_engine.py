"""A second, empty, real engine (harness.second_engine): one lock, two engines, one image ID; and an SSH
host whose engine lacks the base gets it shipped and runs a workspace.

One engine serves the whole module (it starts in seconds, but each build on it starts from an empty cache).
The tests run in file order: the same-lock test builds on the second engine, the SSH-host test reuses that build.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from devenv.backends.base import Handle, LaunchRequest
from devenv.backends.docker import DockerBackend
from devenv.backends.ship import ship_image
from devenv.backends.ssh.known_hosts import KnownHosts
from devenv.backends.ssh.session import SshSession, load_private_key
from devenv.backends.ssh.target import parse_target
from devenv.build.builder import BuildResult
from devenv.build.plan import IMAGE_HASH_LABEL
from devenv.build.project import Project, build_project, checked_lock, lock_project, open_project
from devenv.build.verify import describe_difference
from devenv.lock.models import BaseImage
from devenv.progress import ProgressEvent
from devenv.testing.backend_contract import BackendContract, GpusAsked, Launch, engine_gpus_asked
from devenv.testing.network import free_port
from devenv.testing.projects import WorkspaceImage, copy_template
from harness.second_engine import SecondEngine, start_second_engine

WORKSPACE = "it-engine2"


@pytest.fixture(scope="module")
def engine(cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondEngine]:
    started = start_second_engine(workdir=tmp_path_factory.mktemp("engine2"))
    try:
        yield started
    finally:
        started.remove()  # raises, naming what is left, if the container, volume, network or socket stays


@pytest.fixture(scope="module")
def engine2(engine: SecondEngine) -> Iterator[docker.DockerClient]:
    inner = engine.client()
    yield inner
    inner.close()


@pytest.fixture(scope="module")
def project(client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The minimal template without JupyterLab (the quickest build), locked on this machine's engine."""
    spec = copy_template("minimal", tmp_path_factory.mktemp("same-lock"), project_name=WORKSPACE)
    spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false"))
    opened = open_project(spec)
    lock_project(client, opened)
    return opened


@pytest.fixture(scope="module")
def built_here(client: docker.DockerClient, project: Project, light_image: WorkspaceImage) -> Iterator[BuildResult]:
    """The lock built on this machine's engine as `devenv build` does, with its build cache warm: the session's
    light image (the same template, locked earlier) has made the same steps before, as on a developer's
    machine; the second engine's cache is empty. The two must still agree. Each run locks afresh, so its tag
    is never reused: removed after (the build cache's layers stay)."""
    result = build_project(client, project)
    yield result
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(result.tag)


def _difference(here: docker.DockerClient, there: docker.DockerClient, ours: str, theirs: str) -> str:
    """Where the two images part: the first differing layer by diff_id, then the file-level diff of
    devenv.build.verify, with the other engine's image copied here under a temporary tag."""
    layers_here = here.api.inspect_image(ours)["RootFS"]["Layers"]
    layers_there = there.api.inspect_image(theirs)["RootFS"]["Layers"]
    first = next(
        (
            index
            for index in range(max(len(layers_here), len(layers_there)))
            if layers_here[index : index + 1] != layers_there[index : index + 1]
        ),
        None,
    )
    lines = [
        f"{len(layers_here)} layers here, {len(layers_there)} on the second engine; the first differing: "
        f"{'none (the configs differ)' if first is None else first}"
    ]
    repository, tag = "devenv-test/engine2-copy", theirs.split(":")[-1][:12]
    try:
        there.api.tag(theirs, repository, tag)
        for answer in here.api.load_image(there.api.get_image(f"{repository}:{tag}")):
            if isinstance(answer, dict) and answer.get("error"):
                raise RuntimeError(answer["error"])
        lines.append(describe_difference(here, ours, f"{repository}:{tag}"))
    except Exception as error:  # the diagnosis of a failure must not hide it
        lines.append(f"(no file-level diff: {error})")
    finally:
        with contextlib.suppress(docker.errors.APIError):
            here.images.remove(f"{repository}:{tag}")
    return "\n".join(lines)


def test_the_second_engine_starts_empty_and_is_another_engine(
    engine: SecondEngine, engine2: docker.DockerClient, client: docker.DockerClient
) -> None:
    assert engine.images_at_start == ()
    info = engine2.info()
    assert info["ID"] != client.info()["ID"]
    assert info["Driver"] == "overlay2", f"the data root is a volume so overlay2 works; got {info['Driver']}"
    assert engine2.containers.list(all=True) == []


def test_the_same_lock_built_on_both_engines_gives_the_same_image_id(
    engine: SecondEngine,
    engine2: docker.DockerClient,
    client: docker.DockerClient,
    project: Project,
    built_here: BuildResult,
) -> None:
    base = checked_lock(project).base
    with pytest.raises(docker.errors.ImageNotFound):
        engine2.images.get(base.image)
    ship_image(client, engine2, base.image, base.digest, where=engine.name)
    assert engine2.images.get(base.image).id == base.digest

    built_there = build_project(engine2, project)
    assert not built_there.cached and built_there.steps_run > 0  # a real build from an empty cache
    assert built_there.tag == built_here.tag
    print(
        f"same lock: here {built_here.image_id} ({'cached' if built_here.cached else 'built'}), "
        f"second engine {built_there.image_id} (built in {built_there.seconds:.0f}s)"
    )
    assert built_there.image_id == built_here.image_id, _difference(
        client, engine2, built_here.image_id, built_there.image_id
    )


def test_an_ssh_host_on_the_second_engine_gets_the_base_shipped_and_runs_a_workspace(
    engine: SecondEngine,
    engine2: docker.DockerClient,
    client: docker.DockerClient,
    project: Project,
    built_here: BuildResult,
    tmp_path: Path,
) -> None:
    base = checked_lock(project).base
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine2.images.remove(base.image)  # shipped above: untagged (its layers stay under the image built there)
    with pytest.raises(docker.errors.ImageNotFound):
        engine2.images.get(base.image)

    known = KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none")
    session = SshSession(parse_target(engine.url), load_private_key(engine.identity.read_text()), known)
    session.transport(trust=engine.fingerprint())
    backend = DockerBackend("engine2", session=session)
    events: list[ProgressEvent] = []
    handle = Handle.for_workspace(WORKSPACE)
    try:
        assert backend.client.info()["ID"] == engine2.info()["ID"]  # over SSH, the second engine answers
        built = backend.build(project, events.append)
        messages = [event.message for event in events]
        assert any(message.startswith(f"shipping base image {base.image}") for message in messages), messages
        assert engine2.images.get(base.image).id == base.digest
        assert built.tag == built_here.tag
        assert engine2.images.get(built.tag).id == built.image_id

        image_hash = engine2.images.get(built.tag).labels[IMAGE_HASH_LABEL]
        made = backend.create(
            LaunchRequest(workspace=WORKSPACE, owner="t", image=built.tag, image_hash=image_hash, jupyter=False)
        )
        assert made == handle
        observed = backend.start(handle)
        assert observed.status == "running", observed
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(handle.container)  # on the second engine only
        assert engine2.containers.get(handle.container).status == "running"
        stream = backend.exec(handle, ["echo", "hi"])
        output = b"".join(data for kind, data in stream if kind == "stdout")
        assert (output, stream.exit_code) == (b"hi\n", 0)
    finally:
        backend.remove(handle, keep_volume=False)
        backend.close()
    assert engine2.containers.list(all=True, filters={"name": handle.container}) == []
    assert [volume.name for volume in engine2.volumes.list()] == []


# -- the backend contract over SSH, on the second engine: what every SSH host gives -----------------------------


@pytest.fixture(scope="module")
def remote(engine: SecondEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerBackend]:
    """A DockerBackend reaching the second engine as devenv reaches an SSH host: its socket over SSH, the
    workspaces' ports through tunnels."""
    folder = tmp_path_factory.mktemp("engine2-pins")
    session = SshSession(
        parse_target(engine.url),
        load_private_key(engine.identity.read_text()),
        KnownHosts(folder / "known_hosts", system=folder / "none"),
    )
    session.transport(trust=engine.fingerprint())
    made = DockerBackend("engine2", session=session)
    yield made
    made.close()


@pytest.fixture(scope="module")
def remote_image(remote: DockerBackend, engine2: docker.DockerClient, project: Project) -> tuple[str, str]:
    """The light project's image on the second engine (built there, or a tag lookup after the tests above):
    its tag and image hash."""
    built = remote.build(project)
    return built.tag, engine2.images.get(built.tag).labels[IMAGE_HASH_LABEL]


class TestEngine2Contract(BackendContract):
    """The same contract as the local engine's and the fake's, kept by an engine reached over SSH."""

    @pytest.fixture
    def backend(self, remote: DockerBackend) -> DockerBackend:
        return remote

    @pytest.fixture
    def launch(self, remote_image: tuple[str, str]) -> Launch:
        tag, image_hash = remote_image

        def make(workspace: str, **overrides: Any) -> LaunchRequest:
            fields: dict[str, Any] = {
                "workspace": workspace,
                "owner": "alice",
                "image": tag,
                "image_hash": image_hash,
                "jupyter": False,
                **overrides,
            }
            return LaunchRequest(**fields)

        return make

    @pytest.fixture
    def unreachable_backend(self, engine: SecondEngine, tmp_path: Path) -> DockerBackend:
        """An SSH host whose sshd does not answer (a closed port on this machine)."""
        session = SshSession(
            parse_target(f"ssh://root@127.0.0.1:{free_port()}"),
            load_private_key(engine.identity.read_text()),
            KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none"),
        )
        return DockerBackend("unreachable", session=session, timeout=5)

    @pytest.fixture
    def gpus_asked(self, engine2: docker.DockerClient) -> GpusAsked:
        return engine_gpus_asked(engine2)
