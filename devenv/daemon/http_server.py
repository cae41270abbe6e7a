"""uvicorn's server, except that stopping first ends the daemon's event streams.

uvicorn waits for open responses before it stops, and a follow stream (`devenv events --follow`, the
TUI's live updates) never ends by itself: without this, one open dashboard holds a shutdown open.
"""

from __future__ import annotations

import socket

import uvicorn

from devenv.daemon.events import EventBus


class DaemonServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, bus: EventBus) -> None:
        super().__init__(config)
        self.bus = bus

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.bus.close()
        await super().shutdown(sockets)
