"""State that survives crashes: kill -9 the daemon mid-work, restart it, everything converges."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import docker
import pytest

from devenv.backends.base import LABEL_WORKSPACE
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd

NAMES = [f"it-crash-{i}" for i in range(5)]


def _records(home: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(home / "devenv.db", timeout=5) as db:
            return dict(db.execute("select name, state from workspaces").fetchall())
    except sqlite3.OperationalError:
        return {}


def _ours(client: docker.DockerClient) -> tuple[set[str], set[str]]:
    found = client.containers.list(all=True, filters={"label": LABEL_WORKSPACE})
    containers = {c.labels[LABEL_WORKSPACE] for c in found}
    volumes = {v.attrs["Labels"][LABEL_WORKSPACE] for v in client.volumes.list(filters={"label": LABEL_WORKSPACE})}
    return containers, volumes


@pytest.mark.timeout(900)
def test_kill_9_during_five_ups_then_restart_converges(
    light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    try:
        steady = copy_project(light_image, tmp_path / "steady", "it-steady")
        daemon.cli("up", cwd=steady, check=True)
        written = daemon.cli(
            "exec",
            "it-steady",
            "--",
            "sh",
            "-c",
            "head -c 1000000 /dev/urandom > ~/blob && sha256sum ~/blob",
            check=True,
        )
        checksum = written.stdout.split()[0]

        # A project whose image is not built yet (a slow setup step): the ups stay in flight for a while.
        slow = copy_project(
            light_image,
            tmp_path / "slow",
            "it-slow",
            extra=f"setup:\n  - sleep 4 && echo {time.time_ns()} > /etc/devenv-crash-test\n",
        )
        ups = [daemon.popen("up", "--name", name, cwd=slow) for name in NAMES]
        deadline = time.monotonic() + 60
        while len(_records(daemon.home)) < len(NAMES) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        records = _records(daemon.home)
        assert set(NAMES) <= set(records), records
        in_flight = {name: records[name] for name in NAMES}
        assert any(state != "running" for state in in_flight.values()), in_flight
        daemon.kill9()
        for up in ups:
            up.wait(30)
            assert up.returncode != 0  # their daemon died under them; they say so, without a traceback
            assert "Traceback" not in up.stderr.read()

        daemon.start()
        for name in NAMES:
            daemon.wait_for(name, "running", timeout=300)
        listed = daemon.workspaces()
        assert set(listed) == {*NAMES, "it-steady"}
        assert all(ws["state"] == "running" for ws in listed.values()), listed

        containers, volumes = _ours(client)
        ours = {*NAMES, "it-steady"}
        assert ours <= containers and ours <= volumes
        strays = {name for name in containers | volumes if name.startswith("it-crash") or name == "it-steady"} - ours
        assert not strays, strays
        for name in ours:
            assert len(client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}={name}"})) == 1

        kept = daemon.cli("exec", "it-steady", "--", "sha256sum", "/home/dev/blob", check=True)
        assert kept.stdout.split()[0] == checksum
        events = daemon.cli("events", check=True).stdout
        assert "devenvd 0.1.0 started" in events
    finally:
        daemon.cleanup()
        containers, volumes = _ours(client)
        assert not ({*NAMES, "it-steady"} & (containers | volumes))


@pytest.mark.timeout(600)
def test_a_vanished_container_is_lost_and_start_brings_it_back(
    light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "0.5"})
    daemon.start()
    try:
        folder = copy_project(light_image, tmp_path / "p", "it-vanish")
        daemon.cli("up", cwd=folder, check=True)
        daemon.cli("exec", "it-vanish", "--", "sh", "-c", "echo still > ~/mark", check=True)
        client.containers.get("devenv-it-vanish").remove(force=True)
        lost = daemon.wait_for("it-vanish", "lost", timeout=30)
        assert "vanished" in lost["reason"]
        assert client.volumes.get("devenv-it-vanish-home")  # never deleted behind a live record
        daemon.cli("start", "it-vanish", check=True)
        assert daemon.cli("exec", "it-vanish", "--", "cat", "/home/dev/mark", check=True).stdout == "still\n"

        # A daemon restart with a container it has no record of: adopted, not orphaned.
        daemon.stop()
        with sqlite3.connect(daemon.home / "devenv.db") as db:
            db.execute("delete from workspaces where name = 'it-vanish'")
        daemon.start()
        adopted = daemon.wait_for("it-vanish", "running", timeout=30)
        assert adopted["owner"]
        assert "adopted" in daemon.cli("events", "it-vanish", check=True).stdout
    finally:
        daemon.cleanup()
