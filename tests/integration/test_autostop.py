"""Autostop on the real engine, with short durations: idle stops, work (CPU, a busy kernel) does not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.jupyter import BUSY_CELL


@pytest.fixture
def devenvd() -> Iterator[Devenvd]:
    daemon = Devenvd(env={"DEVENV_AUTOSTOP_INTERVAL": "1", "DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    yield daemon
    daemon.cleanup()


def project(source: WorkspaceImage, folder: Path, name: str) -> Path:
    return copy_project(source, folder, name, replace={"autostop: 30m": "autostop: 4s"})


def stays_running(daemon: Devenvd, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = daemon.workspaces()[name]["state"]
        assert state == "running", f"{name} went {state} while working:\n{daemon.cli('events', name).stdout}"
        time.sleep(1)


@pytest.mark.timeout(300)
def test_idle_workspace_stops_and_busy_cpu_keeps_it(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    folder = project(light_image, tmp_path / "p", "it-idle")
    devenvd.cli("up", cwd=folder, check=True)
    listing = devenvd.cli("ls", check=True).stdout
    row = next(line for line in listing.splitlines() if line.startswith("it-idle"))
    assert "0m0" in row  # the countdown: at most 4 s left

    # CPU work started in the background (the exec returns at once): only the CPU figure shows it
    devenvd.cli(
        "exec",
        "it-idle",
        "--",
        "sh",
        "-c",
        "nohup sh -c 'end=$(($(date +%s)+10)); while [ $(date +%s) -lt $end ]; do :; done' >/dev/null 2>&1 &",
        check=True,
    )
    stays_running(devenvd, "it-idle", 8)  # twice the autostop, under load
    # a `devenv exec` still running (a training script waiting on I/O uses no CPU) is work too
    waiting = devenvd.popen("exec", "it-idle", "--", "sleep", "8")
    stays_running(devenvd, "it-idle", 7)
    waiting.wait(30)
    stopped = devenvd.wait_for("it-idle", "stopped", timeout=40)
    assert "autostop" in stopped["reason"]
    events = devenvd.cli("events", "it-idle", check=True).stdout
    autostop = next(line for line in events.splitlines() if " autostop " in line)
    assert "idle for" in autostop and "no SSH session" in autostop and "CPU" in autostop


@pytest.mark.timeout(400)
def test_a_running_cell_is_never_idle(devenvd: Devenvd, workspace_image: WorkspaceImage, tmp_path: Path) -> None:
    folder = project(workspace_image, tmp_path / "p", "it-cell")
    devenvd.cli("up", cwd=folder, check=True)
    deadline = time.monotonic() + 90
    while True:  # JupyterLab takes a few seconds to answer after the container starts
        started = devenvd.cli(
            "exec", "it-cell", "--", "/opt/devenv/venv/bin/python", "-c", BUSY_CELL, "40", timeout=120
        )
        if started.returncode == 0:
            break
        state = devenvd.workspaces()["it-cell"]["state"]
        if state != "running":
            pytest.fail(f"{state} before the kernel could start: JupyterLab's start-up was taken for idleness")
        assert time.monotonic() < deadline, started.stderr
        time.sleep(1)
    stays_running(devenvd, "it-cell", 15)  # a sleeping cell uses no CPU, but it is work
    devenvd.cli("stop", "it-cell", check=True)
