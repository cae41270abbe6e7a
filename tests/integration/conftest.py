"""Integration tests run against the real Docker engine (no fakes): marked so they can be selected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.build.plan import IMAGE_HASH_LABEL
from devenv.build.project import build_project, lock_project, open_project
from devenv.lock.models import BaseImage
from devenv.testing.devenvd import Devenvd
from devenv.testing.network import free_port
from devenv.testing.projects import WorkspaceImage, copy_template
from devenv.testing.versioning_world import VersioningWorld


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _locked_and_built(client: docker.DockerClient, directory: Path, name: str, *, jupyter: bool) -> WorkspaceImage:
    spec = copy_template("minimal", directory, project_name=name)
    if not jupyter:
        spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false"))
    project = open_project(spec)
    lock_project(client, project)
    result = build_project(client, project)
    image_hash = client.images.get(result.tag).labels[IMAGE_HASH_LABEL]
    return WorkspaceImage(directory, result.tag, image_hash)


@pytest.fixture(scope="session")
def workspace_image(client: docker.DockerClient, cpu_base: BaseImage,
                    tmp_path_factory: pytest.TempPathFactory) -> WorkspaceImage:
    """The minimal template with JupyterLab, built once per session (kept: a later run reuses it)."""
    return _locked_and_built(client, tmp_path_factory.mktemp("ws-jupyter"), "it-ws", jupyter=True)


@pytest.fixture(scope="session")
def light_image(client: docker.DockerClient, cpu_base: BaseImage,
                tmp_path_factory: pytest.TempPathFactory) -> WorkspaceImage:
    """The minimal template without JupyterLab: the fastest image to build, for lifecycle tests."""
    return _locked_and_built(client, tmp_path_factory.mktemp("ws-light"), "it-light", jupyter=False)


@pytest.fixture
def devenvd() -> Iterator[Devenvd]:
    """A real devenvd in its own home, reconciling every second; its workspaces are removed after."""
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    yield daemon
    daemon.cleanup()


@pytest.fixture
def served() -> Iterator[tuple[Devenvd, int]]:
    """A real devenvd also listening on TCP (every call there needs a token), and its port."""
    port = free_port()
    daemon = Devenvd()
    daemon.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    yield daemon, port
    daemon.cleanup()


@pytest.fixture
def devenvd_allowing_world(world: VersioningWorld) -> Iterator[Devenvd]:
    """A real devenvd whose admin allows the world's directory remote (daemon.yaml's allowed_host_folders)."""
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    world.allow_in(daemon.home)
    daemon.start()
    yield daemon
    daemon.cleanup()


@pytest.fixture(scope="session")
def world(client: docker.DockerClient, cpu_base: BaseImage,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[VersioningWorld]:
    """Git and S3 servers, DVC repos on a directory remote and on S3, and two locked projects cloning them."""
    with VersioningWorld(tmp_path_factory.mktemp("versioning"), client) as made:
        yield made
