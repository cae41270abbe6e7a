"""The README's main job through the real `devenv` command: init, lock, build, run, as a user types it; lock,
build and run go through the daemon the first of them starts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import docker.models.containers
import pytest

from devenv.lock.models import BaseImage
from harness.devenvd import Devenvd

# a home of its own, made by the first command, which starts its daemon there, as on a fresh machine
HOME = Devenvd(home=Path(tempfile.gettempdir()) / f"dvd-cli-{os.getpid()}")


def devenv(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("devenv")
    assert binary, "devenv is installed by tests/setup.sh"
    return subprocess.run(
        [binary, *args],
        cwd=directory,
        env=HOME.env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )


@pytest.fixture(scope="module", autouse=True)
def _auto_started_daemon() -> Iterator[None]:
    """The daemon `devenv lock`, `build` and `run` start on their own: stopped, its home removed, after."""
    yield
    HOME.cleanup()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cpu_base: BaseImage, client: docker.DockerClient):  # type: ignore[no-untyped-def]
    directory = tmp_path_factory.mktemp("cli-project")
    created = devenv(directory, "init", "--template", "minimal", "--name", "it-cli")
    assert created.returncode == 0, created.stderr
    spec = directory / "devenv.yaml"
    spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false"))
    yield directory
    for image in client.images.list(name="devenv/it-cli"):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, force=True)


def test_run_locks_and_builds_first_then_lock_build_and_exit_codes(project: Path) -> None:
    assert not (project / "devenv.lock").exists()
    first = devenv(project, "run", "--", "python", "-c", "import rich, getpass; print(getpass.getuser())")
    assert first.returncode == 0, first.stderr  # no lock_missing: it resolves the pins as `up` does
    assert "no devenv.lock yet" in first.stderr and "network off" in first.stderr
    assert first.stdout.strip().splitlines()[-1] == "dev"
    assert (project / "devenv.lock").is_file()

    locked = devenv(project, "lock")
    assert locked.returncode == 0, locked.stderr
    assert "unchanged" in locked.stdout  # the lock `run` wrote is the one `lock` makes
    assert devenv(project, "lock", "--check").returncode == 0

    built = devenv(project, "build")
    assert built.returncode == 0, built.stderr
    tag = built.stdout.strip().splitlines()[-1]
    assert tag.startswith("devenv/it-cli:")
    assert "up to date" in built.stderr and "Step" not in built.stderr  # `run` built it

    assert devenv(project, "run", "--", "sh", "-c", "exit 3").returncode == 3
    rebuilt = devenv(project, "build", "--no-cache")
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip().splitlines()[-1] == tag
    assert "network off" in rebuilt.stderr  # progress goes to stderr, the tag to stdout


def test_stale_lock_stops_the_build_and_names_the_change(project: Path) -> None:
    requirements = project / "requirements.in"
    original = requirements.read_text()
    requirements.write_text(original + "six\n")
    try:
        check = devenv(project, "lock", "--check")
        assert check.returncode == 1
        assert "requirements.in changed" in check.stderr
        build = devenv(project, "build")
        assert build.returncode == 1 and "requirements.in changed" in build.stderr
        assert "Traceback" not in build.stderr + build.stdout
    finally:
        requirements.write_text(original)


def test_bad_spec_stops_lock_with_located_errors(project: Path, tmp_path: Path) -> None:
    shutil.copy(project / "requirements.in", tmp_path / "requirements.in")
    (tmp_path / "devenv.yaml").write_text("name: bad\npyhton: '3.11'\nresources:\n  gpu: 'A100:x'\n")
    result = devenv(tmp_path, "lock")
    assert result.returncode == 2
    assert "devenv.yaml:2:1" in result.stderr and "did you mean 'python'" in result.stderr
    assert "devenv.yaml:4:" in result.stderr and "resources.gpu" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_package_is_a_clear_lock_error(project: Path, tmp_path: Path) -> None:
    shutil.copy(project / "devenv.yaml", tmp_path / "devenv.yaml")
    (tmp_path / "requirements.in").write_text("this-package-does-not-exist-devenv-test\n")
    result = devenv(tmp_path, "lock")
    assert result.returncode == 1
    assert "this-package-does-not-exist-devenv-test" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "devenv.lock").exists()  # nothing half-written


def test_a_run_is_confined_and_its_container_goes_when_the_command_is_interrupted(
    project: Path, client: docker.DockerClient
) -> None:
    """`devenv run` runs on the daemon's engine: confined as a workspace is, and a Ctrl-C ends the command
    there too (the daemon sees its reader go and removes the container), not only the CLI."""
    before = {container.id for container in client.containers.list(all=True, filters={"label": "devenv.one-shot"})}
    running = subprocess.Popen(
        [shutil.which("devenv") or "devenv", "run", "--", "sleep", "600"],
        cwd=project,
        env=HOME.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        started: list[docker.models.containers.Container] = []
        while not started and time.monotonic() < deadline and running.poll() is None:
            started = [
                container
                for container in client.containers.list(filters={"label": "devenv.one-shot", "status": "running"})
                if container.id not in before
            ]
            time.sleep(0.2)
        assert started, running.communicate(timeout=30)
        (container,) = started
        assert container.name.startswith("devenv-run-")
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
        running.send_signal(signal.SIGINT)
        assert running.wait(timeout=30) == 130
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client.containers.get(container.id)
            except docker.errors.NotFound:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"{container.name} still there 60 s after the run was interrupted")
    finally:
        if running.poll() is None:
            running.kill()
