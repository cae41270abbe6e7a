"""The daemon on this machine, started by `devenv` on its own when it is not running, and started anew when
it is of another build than the command asking."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from devenv import paths
from devenv.client.transport import Target
from devenv.errors import DaemonUnreachable, DevenvError
from devenv.installed import AUTOSTARTED_ENV

if TYPE_CHECKING:
    from devenv.client import Client


def start_daemon(*, wait: float = 20.0) -> None:
    """Start a local devenvd in the background (its output goes to the daemon log) and wait for it."""
    log_path = paths.daemon_log_path()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devenv.daemon.process.main"],
            env={**os.environ, AUTOSTARTED_ENV: "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    from devenv.client import Client

    probe = Client(Target(socket=str(paths.socket_path())), autostart=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            probe.health()
            return
        except DaemonUnreachable:
            pass
        code = process.poll()
        if code not in (None, 0):  # 0: another daemon won the race to start; wait for that one
            break
        time.sleep(0.05)
    tail = log_path.read_text(errors="replace").splitlines()[-5:]
    raise DaemonUnreachable(
        "the devenv daemon did not start" + ("; its log ends:\n  " + "\n  ".join(tail) if tail else ""),
        hint=f"see {log_path}",
    )


def restart_if_another_build(client: Client, start: Callable[[], None] | None = None) -> None:
    """A daemon a `devenv` command started on its own, but of another build (devenv upgraded, or edited in a
    development install), is stopped and started anew: it would refuse what this CLI sends, or do it the old
    way. Workspaces keep running; the new daemon takes them over as after any restart. A daemon started by
    hand (`devenvd`, a service) is its admin's to upgrade: left as it is."""
    from devenv.installed import build_id

    try:
        health = client.call("GET", "/v1/health", timeout=5)
    except DevenvError:
        return  # what is wrong with it, the request itself says
    if health.get("build") == build_id() or health.get("autostarted") is False:
        return  # the same code, or not ours to restart (a daemon older than this check says nothing: ours)
    with contextlib.suppress(DevenvError):
        client.call("POST", "/v1/daemon/shutdown", timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _answers(client):
        time.sleep(0.05)
    (start or start_daemon)()


def _answers(client: Client) -> bool:
    connection = client._connection(1)
    try:
        connection.connect()
        return True
    except OSError:
        return False
    finally:
        connection.close()
