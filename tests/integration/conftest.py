"""Integration tests run against the real Docker engine (no fakes): marked so they can be selected."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from leftovers import EngineObject, describe, describe_other_runs, left_behind, other_runs, read_processes, snapshot

from devenv.build.plan import IMAGE_HASH_LABEL
from devenv.build.project import build_project, lock_project, open_project
from devenv.lock.models import BaseImage
from devenv.testing.network import free_port
from devenv.testing.projects import WorkspaceImage, copy_template
from harness import ssh_host
from harness.devenvd import Devenvd
from harness.versioning_world import VersioningWorld

ENGINE_AT_START = pytest.StashKey[list[EngineObject]]()
OTHER_RUNS = pytest.StashKey[dict[int, str]]()
LEFT_BEHIND = pytest.StashKey[tuple[bool, list[str]]]()  # (fails the run, lines for the summary)
KEPT_FOR_REUSE = (ssh_host.NETWORK,)  # the test hosts' network, made once and kept (fixed addresses)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# -- the guard: a run leaves no container, volume or network of devenv's behind --------------------------


def _note_other_runs(config: pytest.Config) -> None:
    if ENGINE_AT_START in config.stash:
        processes = read_processes()
        config.stash[OTHER_RUNS].update(describe_other_runs(processes, other_runs(processes, os.getpid())))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first test, when integration tests are to run: what the engine holds (compared at the end)."""
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    try:
        engine = docker.from_env()
        session.config.stash[ENGINE_AT_START] = snapshot(engine)
        engine.close()
    except docker.errors.DockerException:  # no engine: the tests say so themselves, and nothing can be left
        return
    session.config.stash[OTHER_RUNS] = {}
    _note_other_runs(session.config)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Another test run that comes and goes between our start and end is seen here."""
    _note_other_runs(item.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture's teardown: what this run made and left fails the run, named (alone on the engine)."""
    before = session.config.stash.get(ENGINE_AT_START, None)
    if before is None:
        return
    _note_other_runs(session.config)
    try:
        engine = docker.from_env()
        left = left_behind(before, snapshot(engine), kept=KEPT_FOR_REUSE)
        engine.close()
    except docker.errors.DockerException as error:
        session.config.stash[LEFT_BEHIND] = (False, [f"could not list the engine's objects at the end: {error}"])
        return
    if not left:
        return
    others = session.config.stash[OTHER_RUNS]
    if others and os.environ.get("DEVENV_LEFTOVERS") != "fail":  # =fail: whoever else runs (CI insists)
        lines = [
            *describe(left),
            "not failing the run (DEVENV_LEFTOVERS=fail would): other test runs used this "
            "machine's engine meanwhile, so these may be theirs:",
            *(f"  pid {pid}: {command}" for pid, command in others.items()),
        ]
        session.config.stash[LEFT_BEHIND] = (False, lines)
        return
    session.config.stash[LEFT_BEHIND] = (True, describe(left))
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    fails, lines = config.stash.get(LEFT_BEHIND, (False, []))
    if lines:
        terminalreporter.write_sep("=", "left on the Docker engine", red=fails, yellow=not fails)
        for line in lines:
            terminalreporter.write_line(line)


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
def workspace_image(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> WorkspaceImage:
    """The minimal template with JupyterLab, built once per session (kept: a later run reuses it)."""
    return _locked_and_built(client, tmp_path_factory.mktemp("ws-jupyter"), "it-ws", jupyter=True)


@pytest.fixture(scope="session")
def light_image(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> WorkspaceImage:
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
def world(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VersioningWorld]:
    """Git and S3 servers, DVC repos on a directory remote and on S3, and two locked projects cloning them."""
    with VersioningWorld(tmp_path_factory.mktemp("versioning"), client) as made:
        yield made
