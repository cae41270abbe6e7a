"""Raw HTTP load on a daemon's TCP port, for the tests and the benchmark of its limits (issue 17):
a huge body sent from one reused buffer (never held whole), many open follow streams, the daemon's RSS.

Raw sockets, not an HTTP client: a client that sends its whole body before reading would never see
an answer given after the headers, and a thousand streams want no threads.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The process's resident set size now (VmRSS)."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class RssPeak:
    baseline: int
    peak: int

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@contextlib.contextmanager
def watch_rss(pid: int, every: float = 0.005) -> Iterator[RssPeak]:
    """The highest RSS seen while the block runs, sampled every few milliseconds in a thread."""
    seen = RssPeak(rss_bytes(pid), rss_bytes(pid))
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                seen.peak = max(seen.peak, rss_bytes(pid))
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        with contextlib.suppress(OSError, RuntimeError):
            seen.peak = max(seen.peak, rss_bytes(pid))


@dataclass
class Answer:
    status: int
    payload: dict[str, Any]
    seconds: float  # from the first byte sent to the whole answer read
    sent: int  # body bytes the server took before it answered (or closed)
    closed: bool  # the server closed the connection after answering


def send_body(
    port: int,
    path: str,
    total: int,
    *,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    chunk: int = MIB,
    timeout: float = 60.0,
) -> Answer:
    """POST `total` body bytes, sent from one reused buffer, reading the answer as soon as it comes."""
    block = b"x" * chunk
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = "".join(f"{key}: {value}\r\n" for key, value in (headers or {}).items())
    request = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}{framing}\r\n\r\n".encode()
    frame = f"{chunk:x}\r\n".encode() + block + b"\r\n" if chunked else block
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        sock.setblocking(False)
        sent, pending, received = 0, memoryview(b""), b""
        deadline = started + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while time.perf_counter() < deadline:
                ready = selector.select(timeout=1.0)
                events = ready[0][1] if ready else 0
                if events & selectors.EVENT_READ:
                    break
                if events & selectors.EVENT_WRITE and sent < total:
                    if not pending:
                        pending = memoryview(frame)
                    try:
                        written = sock.send(pending)
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    pending = pending[written:]
                    if not pending:
                        sent += chunk
                    if sent >= total:
                        if chunked:
                            sock.sendall(b"0\r\n\r\n")
                        selector.modify(sock, selectors.EVENT_READ)
        sock.setblocking(True)
        sock.settimeout(max(1.0, deadline - time.perf_counter()))
        status, payload, closed = _read_answer(sock, received)
        return Answer(status, payload, time.perf_counter() - started, sent, closed)


def _read_answer(sock: socket.socket, received: bytes) -> tuple[int, dict[str, Any], bool]:
    while b"\r\n\r\n" not in received:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"the server closed without an answer (got {received[:200]!r})")
        received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {key.strip().lower(): value.strip() for key, _, value in (row.partition(":") for row in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    closed = fields.get("connection", "").lower() == "close"
    if closed:  # the server says it closes: the connection really ends (no draining of what we sent)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
    return status, json.loads(body[:length] or b"{}"), closed


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to `wanted` (bounded by the hard limit); the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Streams:
    """`count` open GET streams on raw sockets, each read until its answer's head came (it is served)."""

    def __init__(self, port: int, path: str, count: int, *, token: str, timeout: float = 120.0) -> None:
        self.sockets: list[socket.socket] = []
        self.seen: dict[socket.socket, bytes] = {}
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
        deadline = time.monotonic() + timeout
        try:
            for _ in range(count):
                sock = _connect(port, deadline)
                sock.sendall(request)
                sock.setblocking(False)
                self.sockets.append(sock)
                self.seen[sock] = b""
            self.wait_for(b"\r\n\r\n", deadline - time.monotonic())
        except BaseException:
            self.close()
            raise
        heads = [data.split(b"\r\n", 1)[0] for data in self.seen.values()]
        refused = [head for head in heads if b" 200 " not in head + b" "]
        if refused:
            self.close()
            raise AssertionError(f"{len(refused)} of {count} streams were refused: {refused[:3]}")

    def wait_for(self, needle: bytes, timeout: float) -> None:
        """Until every stream has received `needle` (bytes accumulate per stream)."""
        waiting = {sock for sock in self.sockets if needle not in self.seen[sock]}
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for sock in waiting:
                selector.register(sock, selectors.EVENT_READ)
            while waiting:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(waiting)} of {len(self.sockets)} streams never got {needle!r}")
                for key, _ in selector.select(timeout=1.0):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    piece = ready.recv(65536)
                    if not piece:
                        raise ConnectionError("a stream was closed by the daemon")
                    self.seen[ready] += piece
                    if needle in self.seen[ready]:
                        waiting.discard(ready)
                        selector.unregister(ready)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def _connect(port: int, deadline: float) -> socket.socket:
    while True:  # a burst may overflow the listen backlog for a moment
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def list_latencies(port: int, token: str, count: int, path: str = "/v1/workspaces") -> list[float]:
    """Seconds each of `count` GETs took, on one kept-alive connection (as the CLI's client does)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    took = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            response.read()
            took.append(time.perf_counter() - started)
            if response.status != 200:
                raise AssertionError(f"GET {path}: {response.status}")
    finally:
        connection.close()
    return took


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summary(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of `values`."""
    return statistics.median(values), percentile(values, 0.99)
