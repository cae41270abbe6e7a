"""Where the daemon is and how its answers are read: targets (a unix socket, or TCP with a token), the
connection over a unix socket, and streamed answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

from devenv import paths
from devenv.errors import UsageError

if TYPE_CHECKING:
    from devenv.client import Client

STREAM_TIMEOUT = 120.0  # the daemon sends a heartbeat line every 10 s on long streams
CALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Target:
    """Where the daemon is: a unix socket (local, auto-started) or a TCP URL with a token."""

    socket: str | None = None
    host: str | None = None
    port: int | None = None
    token: str | None = None
    tls: bool = False

    @property
    def local(self) -> bool:
        return self.socket is not None

    def describe(self) -> str:
        return (
            f"unix://{self.socket}" if self.socket else f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"
        )


def parse_target(url: str, token: str | None = None) -> Target:
    """unix:///path, tcp://host:port, http(s)://host:port."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return Target(socket=parts.path)
    if parts.scheme in ("tcp", "http", "https") and parts.hostname:
        default = 443 if parts.scheme == "https" else 80
        return Target(host=parts.hostname, port=parts.port or default, token=token, tls=parts.scheme == "https")
    raise UsageError(f"daemon URL {url!r}: expected unix:///PATH, tcp://HOST:PORT or https://HOST:PORT")


def default_target() -> Target:
    """DEVENV_HOST (+ DEVENV_TOKEN), else the saved `devenv login`, else the local socket."""
    url = os.environ.get("DEVENV_HOST")
    if url:
        return parse_target(url, os.environ.get("DEVENV_TOKEN"))
    login = paths.login_path()
    if login.exists():
        saved = json.loads(login.read_text())
        return parse_target(saved["url"], saved.get("token"))
    return Target(socket=str(paths.socket_path()))


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


T = TypeVar("T")


class Stream(Generic[T]):
    """A streamed answer (events, logs), sent when first read; `close()` from any thread ends it.

    A thread blocked reading a stream cannot be interrupted otherwise, and a follow stream's heartbeats
    keep it alive for ever: a UI closing a pane closes the stream, and the reader sees its end.
    """

    def __init__(
        self,
        client: Client,
        method: str,
        path: str,
        body: Any,
        read: Callable[[http.client.HTTPResponse], Iterator[T]],
        *,
        timeout: float | None = STREAM_TIMEOUT,
    ) -> None:
        self._client, self._request, self._read = client, (method, path, body), read
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._items: Iterator[T] | None = None
        self._lock = threading.Lock()
        self.closed = False

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        if self._items is None:
            self._items = self._run()
        return next(self._items)

    def _run(self) -> Iterator[T]:
        if self.closed:
            return
        connection, response = self._client._open(*self._request, self._timeout or STREAM_TIMEOUT)
        if self._timeout is None and connection.sock is not None:
            connection.sock.settimeout(None)  # connected and answered: now wait as long as it stays quiet
        with self._lock:
            self._connection = connection
            closed = self.closed
        if closed:  # closed while the request was on its way
            connection.close()
            return
        try:
            yield from self._read(response)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not self.closed:  # the daemon went away mid-stream, not us
                raise self._client._unreachable(exc) from exc
        finally:
            response.close()
            connection.close()

    def close(self) -> None:
        """End the stream now: a reader blocked on it wakes up and stops."""
        with self._lock:
            self.closed = True
            connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
