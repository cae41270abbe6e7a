"""A daemon `devenv` started on its own, but of another build, is stopped and started anew by the next
command; one started by hand, or of the same build, is left as it is."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.client import Client, Target
from devenv.client.local import restart_if_another_build
from devenv.installed import build_id


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class OldDaemon:
    """An HTTP server on a unix socket that answers /v1/health as a daemon of `build` does and stops when asked
    (POST /v1/daemon/shutdown), as devenvd does."""

    def __init__(self, path: Path, health: dict[str, Any]) -> None:
        self.health = health
        self.asked: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.asked.append(f"GET {self.path}")
                self._answer(owner.health)

            def do_POST(self) -> None:
                owner.asked.append(f"POST {self.path}")
                self._answer({"ok": True})
                if self.path == "/v1/daemon/shutdown":
                    threading.Thread(target=owner.stop).start()

            def _answer(self, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.path = path
        self.server = _Server(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "d.sock"


def _health(build: str, **more: Any) -> dict[str, Any]:
    return {"ok": True, "version": build.split("+")[0], "build": build, "pid": 1, "web_url": None, **more}


def test_an_auto_started_daemon_of_another_build_is_stopped_and_started_anew(socket_path: Path) -> None:
    old = OldDaemon(socket_path, _health("0.0.1+0123456789ab", autostarted=True))
    started: list[bool] = []
    restart_if_another_build(Client(Target(socket=str(socket_path)), autostart=False), lambda: started.append(True))
    assert old.asked == ["GET /v1/health", "POST /v1/daemon/shutdown"]
    assert started == [True] and not socket_path.exists()  # the old one was gone before the new one started


def test_a_daemon_older_than_this_check_counts_as_auto_started(socket_path: Path) -> None:
    old = OldDaemon(socket_path, {"ok": True, "version": "0.1.0", "pid": 1, "web_url": None})
    started: list[bool] = []
    restart_if_another_build(Client(Target(socket=str(socket_path)), autostart=False), lambda: started.append(True))
    assert "POST /v1/daemon/shutdown" in old.asked and started == [True]


@pytest.mark.parametrize(
    "health",
    [_health(build_id(), autostarted=True), _health("0.0.1+0123456789ab", autostarted=False)],
    ids=["same build", "started by hand"],
)
def test_the_same_build_or_a_daemon_started_by_hand_is_left_alone(socket_path: Path, health: dict[str, Any]) -> None:
    old = OldDaemon(socket_path, health)
    try:
        started: list[bool] = []
        client = Client(Target(socket=str(socket_path)), autostart=False)
        restart_if_another_build(client, lambda: started.append(True))
        assert old.asked == ["GET /v1/health"] and started == []
    finally:
        old.stop()
