"""A fake daemon served over a real unix socket, for tests that drive a real Client (the TUI's).

The app is built with the socket's path so that requests over it count as the local admin, as with devenvd.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from devenv.client import Client, Target
from devenv.daemon.api.app import create_app
from devenv.daemon.process.http_server import DaemonServer
from devenv.errors import DaemonUnreachable
from devenv.testing.daemon import FakeDaemon, fake_daemon

START_TIMEOUT = 10.0


@contextmanager
def served_fake_daemon(folder: Path) -> Iterator[tuple[FakeDaemon, Client]]:
    """A FakeDaemon answering on folder/"d.sock" (keep `folder` short: socket paths stop at 107 bytes)."""
    fake = fake_daemon(folder)
    path = folder / "d.sock"
    app = create_app(fake.daemon.services, socket_path=str(path))
    server = DaemonServer(
        uvicorn.Config(app, uds=str(path), log_level="warning", lifespan="on"), fake.daemon.services.bus
    )
    thread = threading.Thread(target=server.run, name=f"fake devenvd on {path}", daemon=True)
    thread.start()
    client = Client(Target(socket=str(path)), autostart=False)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client.health()
                break
            except DaemonUnreachable:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield fake, client
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT)
        fake.daemon.scheduler.shutdown()
