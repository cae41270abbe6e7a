"""Fixtures shared by unit tests: a fake daemon served on a real unix socket, with two workspaces (the TUI's Pilot
tests), and one the in-process CLI talks to (`cli_daemon`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.client import Client
from devenv.testing.daemon import FakeDaemon
from devenv.testing.served import served_fake_daemon
from harness.tui import make_workspaces


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tui", dir="/tmp"))  # short: unix socket paths stop at 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(folder: Path) -> Iterator[tuple[FakeDaemon, Client]]:
    with served_fake_daemon(folder / "d") as (fake, client):
        make_workspaces(client, folder, "alpha", "beta")
        yield fake, client


@pytest.fixture
def cli_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    """A fake daemon on a real unix socket, which `devenv` run in this process (harness.in_process_cli) reaches."""
    with served_fake_daemon(tmp_path / "d") as (fake, _client):
        monkeypatch.setenv("DEVENV_HOST", f"unix://{tmp_path / 'd' / 'd.sock'}")
        monkeypatch.delenv("DEVENV_DEBUG", raising=False)
        yield fake
