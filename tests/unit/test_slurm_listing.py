"""One reconciler pass asks the cluster once, however many workspaces it holds: the slurm backend's listing is
one ssh command (squeue and the workspace folders together), checked here against a session that counts."""

from __future__ import annotations

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
        assert len(session.commands) == 1 and session.commands[0].count("squeue") == 1
        assert len(seen) == count and all(item.running for item in seen)
        assert {item.detail for item in seen} <= {"RUNNING on node1", "RUNNING on node2"}
        assert all(item.ports[22] > 0 for item in seen)  # each one's sshd through a tunnel (made, not yet used)
    finally:
        backend.close()
