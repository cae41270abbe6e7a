"""uvicorn's server as the daemon runs it: settings sized for many open streams, and a stop that first
ends the daemon's event streams.

uvicorn waits for open responses before it stops, and a follow stream (`devenv events --follow`, the
TUI's live updates) never ends by itself: without this, one open dashboard holds a shutdown open.
"""

from __future__ import annotations

import resource
import socket
from typing import Any

import uvicorn

from devenv.daemon.services.events import EventBus

OPEN_FILES = 65536  # the soft limit we ask for: each open stream is a socket, and 1024 is a common default
SPARE_FILES = 256  # kept for the store, engine connections, logs and JupyterLab's upstream connections
HEADER_BYTES = 16 * 1024  # the largest request head: bounds what a connection holds before its body


def raise_open_files_limit(wanted: int = OPEN_FILES) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (never above the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return OPEN_FILES if soft == resource.RLIM_INFINITY else soft


def server_config(app: Any, **overrides: Any) -> uvicorn.Config:
    """uvicorn settings for the daemon: streams hold no thread, so the open files are the only bound on them.

    Past `limit_concurrency` uvicorn answers 503 at once, rather than failing to accept for want of a file.
    The listening sockets are made (with their backlog) by server.py, so uvicorn's `backlog` is not used.
    """
    files = raise_open_files_limit()
    settings: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "timeout_keep_alive": 30,
        "limit_concurrency": max(64, files - SPARE_FILES),
        "h11_max_incomplete_event_size": HEADER_BYTES,
        # h11 by name: "auto" takes httptools when installed, which bounds no head
        # (and measured no faster here: issue 19, docs/daemon.md)
        "http": "h11",
    }
    return uvicorn.Config(app, **{**settings, **overrides})


class DaemonServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, bus: EventBus) -> None:
        super().__init__(config)
        self.bus = bus

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.bus.close()
        await super().shutdown(sockets)
