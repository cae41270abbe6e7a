"""The real `devenv tui` in a real terminal (tmux, 80x24) against a real devenvd on the real Docker engine.

Pilot tests drive the app in-process against a fake daemon; this one is what a person does: keys typed
into a terminal, the screen read back as text. It launches a workspace through the wizard (`n`, the
name typed over the spec's own, ctrl+s), waits for its row to say running, runs a command over SSH
with `t` (the dashboard hands the terminal over and takes it back), then stops it with `x`.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.backends.base import container_name
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd, devenv_command
from harness.terminal import Terminal

LAUNCH_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def row_state(screen: str, name: str) -> str | None:
    """The STATE cell of the dashboard row for `name` (the row's first two cells: NAME STATE ...)."""
    for line in screen.splitlines():
        cells = line.split()
        if len(cells) >= 2 and cells[0] == name:
            return cells[1]
    return None


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if not shutil.which("tmux"):
        pytest.fail("tmux is missing: tests/setup.sh installs it (apt-get install tmux)")
    term = Terminal(tmp_path)
    yield term
    term.kill()


def test_launch_and_stop_a_workspace_with_keys(
    devenvd: Devenvd, terminal: Terminal, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    spec_name = "it-tui-spec"
    name = f"it-tui-{uuid.uuid4().hex[:6]}"  # typed over the spec's own name: the form's field is what counts
    folder = copy_project(light_image, tmp_path / "project", spec_name)
    terminal.start([devenv_command(), "tui"], env=devenvd.env, cwd=folder)
    log = devenvd.log_tail

    terminal.wait(lambda screen: "0 workspaces on" in screen, "the empty dashboard", 30, log=log)
    terminal.keys("n")
    wizard = terminal.wait(
        lambda screen: "this folder" in screen and spec_name in screen,
        "the launch wizard with this folder's spec and its name",
        15,
        log=log,
    )
    assert "Launch a workspace" in wizard
    terminal.keys("Tab")  # template -> name
    terminal.keys("End", "C-u")
    terminal.wait(lambda screen: spec_name not in screen, "the name field to be cleared", 10, log=log)
    terminal.type(name)
    terminal.wait(lambda screen: name in screen, "the typed name", 10, log=log)
    terminal.keys("C-s")

    running = terminal.wait(
        lambda screen: row_state(screen, name) == "running", f"{name}'s row to say running", LAUNCH_TIMEOUT, log=log
    )
    assert "Launch a workspace" not in running  # the wizard dismissed itself
    assert "1 workspace on" in running
    workspaces = devenvd.workspaces()
    assert set(workspaces) == {name}, workspaces  # the typed name, not the spec's
    assert workspaces[name]["state"] == "running"
    assert workspaces[name]["image_hash"] == light_image.image_hash
    assert client.containers.get(container_name(name)).status == "running"

    terminal.keys("t")  # SSH in: the dashboard hands this terminal to `devenv ssh NAME`
    terminal.wait(
        lambda screen: f"ssh {name} (exit the shell" in screen and screen.rstrip().endswith("$"),
        "a shell prompt in the workspace",
        60,
        log=log,
    )
    terminal.type("echo tui-ssh-$((6*7)) $(id -un)")
    terminal.keys("Enter")
    terminal.wait(lambda screen: "tui-ssh-42 dev" in screen, "the command's output over ssh", 20, log=log)
    terminal.type("exit")
    terminal.keys("Enter")
    back = terminal.wait(lambda screen: row_state(screen, name) == "running", "the dashboard again", 20, log=log)
    assert "1 workspace on" in back

    terminal.keys("x")  # the new workspace is the selected (and only) row
    terminal.wait(
        lambda screen: row_state(screen, name) == "stopped", f"{name}'s row to say stopped", STOP_TIMEOUT, log=log
    )
    assert devenvd.workspaces()[name]["state"] == "stopped"
    assert client.containers.get(container_name(name)).status == "exited"
    assert not terminal.dead()
