"""One reconciler pass asks the cluster once, however many workspaces it holds: the slurm backend's listing is
one ssh command (squeue and the workspace folders together), checked here against a session that counts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from devenv.backends.slurm.backend import SlurmBackend
from devenv.backends.slurm.models import SlurmConfig
from devenv.backends.ssh.session import CommandResult


class CountingSession:
    """Answers the listing command as a login node with `count` workspaces would, and counts every command."""

    url = "ssh://alice@login"

    def __init__(self, count: int) -> None:
        self.commands: list[str] = []
        queue = "".join(f"{100 + i}|devenv-w{i}|RUNNING|None|node{i % 2 + 1}\n" for i in range(count))
        folders = "".join(
            f"w{i}|ann - h{i}|{100 + i} node{i % 2 + 1} {20100 + i} {25100 + i} -|{100 + i}\n" for i in range(count)
        )
        self.answer = f"{queue}@@devenv@@\n{folders}"

    def run(self, command: str, *, timeout: float = 30.0, stdin: Iterable[bytes] | None = None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(0, self.answer, "")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("count", [1, 50])
def test_one_listing_is_one_command_for_any_number_of_workspaces(
    count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path))
    session = CountingSession(count)
    backend = SlurmBackend("cluster", SlurmConfig(login=session.url, shared="/shared"), session=session)  # type: ignore[arg-type]
    try:
        seen = backend.list_workspaces()
        assert len(session.commands) == 1  # one ssh command: its squeue calls are counted below, run by a shell
        assert len(seen) == count and all(item.running for item in seen)
        assert {item.detail for item in seen} <= {"RUNNING on node1", "RUNNING on node2"}
        assert all(item.ports[22] > 0 for item in seen)  # each one's sshd through a tunnel (made, not yet used)
    finally:
        backend.close()


class ShellSession:
    """Runs the listing command in a real bash whose `squeue` is a script that answers as Slurm would for the
    queue given, and writes down each call (its arguments) in `calls`."""

    url = "ssh://alice@login"

    def __init__(self, folder: Path, mine: str, pending: str) -> None:
        self.calls = folder / "calls"
        bin_dir = folder / "bin"
        bin_dir.mkdir(parents=True)
        (folder / "mine").write_text(mine)
        (folder / "pending").write_text(pending)
        script = bin_dir / "squeue"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {self.calls}\n'
            f'case "$*" in *--me*) cat {folder / "mine"} ;; *) cat {folder / "pending"} ;; esac\n'
        )
        script.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(self, command: str, *, timeout: float = 30.0, stdin: Iterable[bytes] | None = None) -> CommandResult:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env, timeout=timeout)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        pass


def listed(tmp_path: Path, mine: str, pending: str) -> tuple[dict[str, str], list[str]]:
    session = ShellSession(tmp_path, mine, pending)
    backend = SlurmBackend("cluster", SlurmConfig(login=session.url, shared="/nonexistent"), session=session)  # type: ignore[arg-type]
    try:
        seen = {item.workspace: item.detail for item in backend.list_workspaces()}
    finally:
        backend.close()
    return seen, session.calls.read_text().splitlines()


def test_a_pending_workspace_shows_its_place_in_its_partitions_queue_and_only_then_is_the_queue_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "home"))
    running = "".join(f"{100 + i}|devenv-w{i}|RUNNING|None|node1|gpu|1000\n" for i in range(50))
    seen, calls = listed(tmp_path / "a", running, "")
    assert len(calls) == 1 and "--me" in calls[0]  # nothing pends: one squeue for 50 workspaces
    assert set(seen.values()) == {"RUNNING on node1 (starting the container)"}

    mine = running + "200|devenv-waiting|PENDING|Resources||gpu|1000\n201|devenv-cpu|PENDING|Priority||cpu|5\n"
    pending = (
        "150|gpu|2000\n"  # someone else's, of a higher priority: ahead
        "190|gpu|1000\n"  # the same priority, submitted first: ahead
        "210|gpu|1000\n"  # the same priority, submitted later: behind
        "300|gpu|10\n"  # a lower priority: behind
        "200|gpu|1000\n201|cpu|5\n"  # ours, listed too
    )
    seen, calls = listed(tmp_path / "b", mine, pending)
    assert len(calls) == 2 and "--states=PENDING" in calls[1] and "--me" not in calls[1]
    assert seen["waiting"] == "PENDING (Resources), 3rd in the gpu queue"
    assert seen["cpu"] == "PENDING (Priority), 1st in the cpu queue"
