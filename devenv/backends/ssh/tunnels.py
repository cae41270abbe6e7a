"""Local ports that lead, through a host's SSH connection, to a port of a container on that host.

The daemon, `devenv ssh`, `ssh WS.devenv` and the Jupyter proxy all reach a local workspace at
127.0.0.1:PORT; a workspace on an SSH host is reached the same way, at a port of this machine
whose every connection becomes a `direct-tcpip` channel from the host to the container's address
on the workspace's own network (`isolation`), which the host reaches as it reaches every bridge of
its engine. Nothing is published on the host's interfaces.

A tunnel keeps its local port while its container runs (and across restarts of it, following its
new address), so ssh_config caches and open browser tabs stay valid.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from devenv.backends.ssh.session import SshSession
from devenv.errors import DevenvError

log = logging.getLogger("devenv.tunnels")


class _Tunnel:
    def __init__(self, session: SshSession, address: str, port: int, local_port: int = 0) -> None:
        self.session = session
        self.target = (address, port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind(("127.0.0.1", local_port))
        except OSError:
            self.listener.bind(("127.0.0.1", 0))  # the wished-for port is taken: any port will do
        self.listener.listen(64)
        self.local_port: int = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, name=f"tunnel-{self.local_port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._carry, args=(client,), daemon=True).start()

    def _carry(self, client: socket.socket) -> None:
        try:
            channel = self.session.open_channel(*self.target)
        except DevenvError as error:
            log.warning("tunnel 127.0.0.1:%s: %s", self.local_port, error.message)
            client.close()
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def upstream() -> None:
            with contextlib.suppress(OSError, EOFError):
                while data := client.recv(65536):
                    channel.sendall(data)
            with contextlib.suppress(OSError, EOFError):
                channel.shutdown_write()

        sender = threading.Thread(target=upstream, daemon=True)
        sender.start()
        with contextlib.suppress(OSError, EOFError):
            while data := channel.recv(65536):
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
        sender.join(timeout=30)
        channel.close()
        client.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


class Tunnels:
    """The tunnels of one host, by (container name, container port)."""

    def __init__(self, session: SshSession) -> None:
        self.session = session
        self._open: dict[tuple[str, int], _Tunnel] = {}
        self._lock = threading.Lock()

    def local_port(self, container: str, address: str, port: int, *, wish: int = 0) -> int:
        """The local port leading to address:port of `container`; made on first ask, retargeted after."""
        with self._lock:
            tunnel = self._open.get((container, port))
            if tunnel is None:
                tunnel = self._open[(container, port)] = _Tunnel(self.session, address, port, wish)
            tunnel.target = (address, port)
            return tunnel.local_port

    def keep_only(self, containers: set[str]) -> None:
        """Close the tunnels of containers that no longer run."""
        with self._lock:
            for key in [key for key in self._open if key[0] not in containers]:
                self._open.pop(key).close()

    def close(self) -> None:
        self.keep_only(set())
