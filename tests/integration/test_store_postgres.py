"""The daemon on a real PostgreSQL store (a team server), by URL: migrations and the lifecycle."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (Debian's server binaries), listening on a unix socket only."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    assert found, "PostgreSQL's server is a test dependency: tests/setup.sh installs Debian's postgresql"
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="devenv-pg-", dir="/tmp"))
    shutil.chown(folder, "postgres", "postgres")
    port = _free_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)

    as_postgres(str(bin_dir / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(folder / "data"),
        "-w",
        "-l",
        str(folder / "log"),
        "-o",
        f"-k {folder} -p {port} -c listen_addresses=''",
        "start",
    )
    try:
        as_postgres(str(bin_dir / "createdb"), "-h", str(folder), "-p", str(port), "devenv")
        yield f"postgresql+psycopg://postgres@/devenv?host={folder}&port={port}"
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_the_lifecycle_on_postgresql(postgres_url: str, light_image: WorkspaceImage, tmp_path: Path) -> None:
    daemon = Devenvd(env={"DEVENV_DATABASE_URL": postgres_url})
    daemon.start()
    try:
        folder = copy_project(light_image, tmp_path / "p", "it-pg")
        daemon.cli("up", cwd=folder, check=True)
        assert daemon.workspaces()["it-pg"]["state"] == "running"
        assert daemon.cli("exec", "it-pg", "--", "true").returncode == 0
        daemon.cli("stop", "it-pg", check=True)
        daemon.stop()  # the store is the server's, not a file in DEVENV_HOME: a new daemon sees the same
        assert not (daemon.home / "devenv.db").exists()
        daemon.start()
        assert daemon.workspaces()["it-pg"]["state"] == "stopped"
        events = daemon.cli("events", "it-pg", check=True).stdout
        assert "up (new)" in events and "stopping -> stopped" in events
        daemon.cli("rm", "it-pg", check=True)
        assert "it-pg" not in daemon.workspaces()
    finally:
        daemon.cleanup()
