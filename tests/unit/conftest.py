"""Fixtures shared by the TUI's Pilot tests: a fake daemon served on a real unix socket, with two workspaces."""

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
