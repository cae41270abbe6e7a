"""The gate before the app: a caller is decided and a body limit applied before any body is read.

Most tests drive the gate as plain ASGI around an app that records what reached it; the last ones
serve it with uvicorn on TCP and send from a raw socket, as an attacker would.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from fastapi.testclient import TestClient

from devenv.daemon.api.gate import CALLER_STATE, BodyLimits, Gate, gated_caller
from devenv.daemon.services.access import Caller
from devenv.daemon.services.tokens import Tokens, local_actor
from devenv.daemon.store.db import make_engine, migrate, session_factory
from devenv.errors import UsageError
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from harness.load import send_body

LIMITS = BodyLimits(api=1000, hook=100, jupyter=5000)
SOCKET = "/tmp/devenvd-test.sock"
OFFERED = 128 << 20  # a body far larger than the kernel's socket buffers (a few MiB on loopback)


class Recorder:
    """An ASGI app that reads the whole body and says how much it got."""

    def __init__(self) -> None:
        self.calls = 0
        self.received = 0
        self.callers: list[Caller | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        self.callers.append(gated_caller(scope))
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            self.received += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = json.dumps({"received": self.received}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class Sent:
    """What the gate (or the app) answered, and how much of the body was ever pulled."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.pulled = 0

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.messages if m["type"] == "http.response.start"))

    @property
    def starts(self) -> int:
        return sum(1 for m in self.messages if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(next(m["headers"] for m in self.messages if m["type"] == "http.response.start"))

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"))


def call(
    app: Any,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    chunks: Iterable[bytes] = (),
    length: int | None = None,
    server: tuple[str, int | None] = ("127.0.0.1", 8000),
) -> Sent:
    """One request through `app` as plain ASGI; `length` declares a Content-Length, else the body is chunked."""
    sent = Sent()
    pieces = list(chunks)
    raw = [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    if length is not None:
        raw.append((b"content-length", str(length).encode()))
    elif pieces:
        raw.append((b"transfer-encoding", b"chunked"))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": raw,
        "server": server,
        "query_string": b"",
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
        "root_path": "",
        "http_version": "1.1",
    }

    async def receive() -> dict[str, Any]:
        if sent.pulled < len(pieces):
            sent.pulled += 1
            return {"type": "http.request", "body": pieces[sent.pulled - 1], "more_body": sent.pulled < len(pieces)}
        if not pieces and sent.pulled == 0:
            sent.pulled = -1  # an empty body, delivered once
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep(3600)  # a client that never sends more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.messages.append(message)

    anyio.run(app, scope, receive, send)
    return sent


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    return Tokens(session_factory(engine))


@pytest.fixture
def app() -> Recorder:
    return Recorder()


def gate(app: Any, tokens: Tokens, limits: BodyLimits = LIMITS) -> Gate:
    return Gate(app, tokens=tokens, socket_path=SOCKET, limits=limits)


def test_an_anonymous_call_is_refused_before_its_body_is_read(app: Recorder, tokens: Tokens) -> None:
    token = tokens.create("alice")
    allowed = call(
        gate(app, tokens),
        "POST",
        "/v1/workspaces",
        headers={"Authorization": f"Bearer {token}"},
        chunks=[b"x" * 400, b"y" * 400],
    )
    assert allowed.status == 200 and app.received == 800 and allowed.pulled == 2  # the control: read whole
    for headers in ({}, {"Authorization": "Bearer dvt_wrong"}, {"Authorization": "Basic eDp5"}):
        refused = call(gate(app, tokens), "POST", "/v1/workspaces", headers=headers, chunks=[b"x" * 400] * 2)
        assert refused.status == 401 and refused.payload["code"] == "unauthorized", headers
        assert refused.pulled == 0 and refused.headers[b"connection"] == b"close"
    assert app.calls == 1


def test_the_caller_is_handed_on_the_socket_owner_being_the_admin(app: Recorder, tokens: Tokens) -> None:
    token = tokens.create("alice")
    call(gate(app, tokens), "GET", "/v1/whoami", server=(SOCKET, None))
    call(gate(app, tokens), "GET", "/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert app.callers == [Caller(local_actor(), admin=True), Caller("alice", admin=False)]
    other = call(gate(app, tokens), "GET", "/v1/whoami", server=("/tmp/another.sock", None))
    assert other.status == 401 and app.calls == 2  # another unix socket is not the daemon's
    assert CALLER_STATE == "devenv_caller"


def test_health_the_webhook_and_jupyter_need_no_token(app: Recorder, tokens: Tokens) -> None:
    assert call(gate(app, tokens), "GET", "/v1/health").status == 200
    assert call(gate(app, tokens), "POST", "/v1/hooks/git", chunks=[b"{}"]).status == 200
    assert call(gate(app, tokens), "GET", "/jupyter/ws/lab").status == 200  # the proxy checks its cookie
    assert app.calls == 3 and app.callers == [None, None, None]
    assert call(gate(app, tokens), "POST", "/v1/health").status == 401  # open: GET health, POST hook only


def test_a_declared_length_over_the_limit_is_refused_at_once(app: Recorder, tokens: Tokens) -> None:
    bearer = {"Authorization": f"Bearer {tokens.create('alice')}"}
    cases = [("/v1/workspaces", bearer, 1000), ("/v1/hooks/git", {}, 100), ("/jupyter/ws/api/contents/a", {}, 5000)]
    for path, headers, limit in cases:
        fits = call(gate(app, tokens), "POST", path, headers=headers, chunks=[b"x" * limit], length=limit)
        assert fits.status == 200 and fits.pulled == 1, path
        over = call(gate(app, tokens), "POST", path, headers=headers, chunks=[b"x" * (limit + 1)], length=limit + 1)
        assert over.status == 413 and over.pulled == 0, path
        assert over.payload["code"] == "body_too_large" and str(limit) in over.payload["message"]
        assert over.headers[b"connection"] == b"close"
    assert app.calls == 3


def test_a_chunked_body_is_cut_at_the_limit_and_the_app_answers_nothing_more(app: Recorder, tokens: Tokens) -> None:
    bearer = {"Authorization": f"Bearer {tokens.create('alice')}"}
    fits = call(gate(app, tokens), "POST", "/v1/workspaces", headers=bearer, chunks=[b"x" * 250] * 4)
    assert fits.status == 200 and fits.pulled == 4 and app.received == 1000
    app.received = 0
    over = call(gate(app, tokens), "POST", "/v1/workspaces", headers=bearer, chunks=[b"x" * 300] * 1000)
    assert over.status == 413 and over.payload["code"] == "body_too_large"
    assert over.pulled == 4 and app.received == 900  # the chunk over the limit never reached the app
    assert over.starts == 1  # the app's own answer, after its disconnect, was dropped
    hook = call(gate(app, tokens), "POST", "/v1/hooks/git", chunks=[b"x" * 60] * 1000)
    assert hook.status == 413 and hook.pulled == 2


def test_the_limit_is_read_from_the_environment() -> None:
    assert BodyLimits.from_env({}) == BodyLimits()
    assert BodyLimits.from_env({"DEVENV_MAX_BODY_BYTES": "2048"}) == BodyLimits(api=2048, hook=2048)
    assert BodyLimits.from_env({"DEVENV_MAX_BODY_BYTES": str(64 << 20)}).hook == 1 << 20
    for wrong in ("lots", "0", "-5", "1.5"):
        with pytest.raises(UsageError, match="DEVENV_MAX_BODY_BYTES"):
            BodyLimits.from_env({"DEVENV_MAX_BODY_BYTES": wrong})


# -- the real thing: FastAPI under uvicorn, a raw socket -------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


@pytest.fixture
def served(fake: FakeDaemon) -> Iterator[int]:
    """The fake daemon's API behind the gate (small limits), served by uvicorn on a TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    limits = BodyLimits(api=64 * 1024, hook=16 * 1024)
    front = Gate(fake.app, tokens=fake.daemon.services.tokens, socket_path=None, limits=limits)
    server = uvicorn.Server(uvicorn.Config(front, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


def test_the_api_refuses_big_bodies_and_closes_rather_than_drains(
    fake: FakeDaemon, served: int, tmp_path: Path
) -> None:
    upload = project_upload(tmp_path / "project", name="small")
    with TestClient(Gate(fake.app, tokens=fake.daemon.services.tokens, socket_path=None), headers=fake.headers) as api:
        answer = api.post("/v1/workspaces", json={**upload, "name": "small"})
        assert answer.status_code == 200 and "workspace" in answer.text.splitlines()[-1]  # a normal body passes
    for headers, chunked, status in [
        ({}, False, 401),
        ({}, True, 401),
        (fake.headers, False, 413),
        (fake.headers, True, 413),
    ]:
        got = send_body(served, "/v1/workspaces", OFFERED, headers=headers, chunked=chunked, chunk=64 * 1024)
        assert got.status == status, (headers, chunked, got)
        assert got.closed and got.sent < OFFERED // 4 and got.seconds < 5  # what was sent: socket buffers, not read
    hook = send_body(served, "/v1/hooks/git", OFFERED, chunked=True, chunk=4096)
    assert hook.status == 413 and hook.closed and hook.sent < OFFERED // 4
