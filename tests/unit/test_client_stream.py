"""Client streams (events, logs, changes): closed from another thread, ended by a stopping daemon,
and a daemon that dies mid-stream is DaemonUnreachable, never a raw socket error."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from devenv.client import Client, Target
from devenv.errors import DaemonUnreachable
from devenv.testing.served import served_fake_daemon


def read_in_thread(stream: Any) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []

    def read() -> None:
        try:
            for item in stream:
                got.append(item)
        except Exception as error:  # the test looks at what ended the stream
            got.append(error)
        got.append("end")

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_close_wakes_a_reader_blocked_on_a_follow_stream(folder: Path) -> None:
    with served_fake_daemon(folder / "d") as (fake, client):
        stream = client.follow_events()
        thread, got = read_in_thread(stream)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:  # until the stream is subscribed (slow on a busy machine)
            fake.daemon.services.events.record(None, "daemon", "hello")
            time.sleep(0.2)
        assert got and got[0]["message"] == "hello"
        started = time.monotonic()
        stream.close()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 1
        assert got[-1] == "end"  # ended quietly: no error for a stream we closed
        assert all(item["message"] == "hello" for item in got[:-1])


def test_a_stream_closed_before_it_is_read_sends_nothing(folder: Path) -> None:
    with served_fake_daemon(folder / "d") as (_fake, client):
        stream = client.follow_events()
        stream.close()
        assert list(stream) == []


def test_a_stopping_daemon_ends_follow_streams(folder: Path) -> None:
    """Without the bus closing them, uvicorn waits for open follow streams and a shutdown hangs."""
    with served_fake_daemon(folder / "d") as (_fake, client):
        thread, got = read_in_thread(client.follow_events())
        time.sleep(0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert not thread.is_alive() and got[-1] == "end"


def test_a_daemon_dying_mid_stream_is_daemon_unreachable(folder: Path) -> None:
    path = folder / "dying.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer_then_die() -> None:
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b'20\r\n{"id": 1, "kind": "state"}\n'
        )
        connection.close()  # mid-chunk

    threading.Thread(target=answer_then_die, daemon=True).start()
    client = Client(Target(socket=str(path)), autostart=False)
    with pytest.raises(DaemonUnreachable, match="does not answer"):
        list(client.follow_events())
    server.close()
