"""The daemon's front door, before FastAPI reads a byte of a body: who is calling, and how much they may send.

FastAPI reads and parses a route's body before the route's dependencies (the caller) run, so an
anonymous 300 MB POST used to be held in memory, then refused. Here, from the headers alone: a /v1
caller is decided first (401 at once, the body unread), a declared Content-Length over the limit gets
413 at once, and a body of unknown length is counted as it streams and cut with 413 at the limit.
A refused body is never drained: the answer says `Connection: close` and the connection is closed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devenv.code.manifest import max_code_bytes
from devenv.daemon.services.access import Caller
from devenv.daemon.services.tokens import Tokens, local_actor
from devenv.daemon.store.db import SharedReads
from devenv.errors import Unauthorized, UsageError, error_payload

CALLER_STATE = "devenv_caller"  # scope["state"][CALLER_STATE]: the Caller the gate authenticated
MAX_BODY_ENV = "DEVENV_MAX_BODY_BYTES"
MIB = 1024 * 1024
API_MAX_BODY = 8 * MIB  # a project upload is a few small text files
HOOK_MAX_BODY = 1 * MIB  # a forge's push payload; the hook is anonymous until its signature is checked
# JupyterLab uploads files in 1 MiB chunks, but saves a notebook (outputs, images and all) in one PUT.
# Only a person with a Jupyter grant gets that far (the proxy checks the cookie before the body).
JUPYTER_MAX_BODY = 100 * MIB
OPEN = frozenset({("GET", "/v1/health"), ("POST", "/v1/hooks/git")})  # no token: health; HMAC-signed hooks
BODY_TOO_LARGE = "body_too_large"


@dataclass(frozen=True)
class BodyLimits:
    api: int = API_MAX_BODY
    hook: int = HOOK_MAX_BODY
    jupyter: int = JUPYTER_MAX_BODY
    code: int = field(default_factory=max_code_bytes)  # PUT /v1/code: a project folder's tar (DEVENV_MAX_CODE_BYTES)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BodyLimits:
        """The /v1 limit from DEVENV_MAX_BODY_BYTES (bytes); the hook's never above it."""
        raw = environ.get(MAX_BODY_ENV)
        if raw is None or not raw.strip():
            return cls()
        try:
            api = int(raw)
        except ValueError:
            api = -1
        if api <= 0:
            raise UsageError(f"{MAX_BODY_ENV}={raw!r}: expected a number of bytes above 0")
        return cls(api=api, hook=min(HOOK_MAX_BODY, api))

    def for_path(self, path: str) -> int:
        if path == "/v1/hooks/git":
            return self.hook
        if path.startswith("/jupyter/"):
            return self.jupyter
        if path == "/v1/code":
            return self.code
        return self.api


def gated_caller(scope: Scope) -> Caller | None:
    """The caller the gate authenticated for this request (None when the app runs without the gate)."""
    found = scope.get("state", {}).get(CALLER_STATE)
    return found if isinstance(found, Caller) else None


def too_large(limit: int) -> dict[str, Any]:
    return {
        "code": BODY_TOO_LARGE,
        "message": f"the request body is over this daemon's limit of {limit} bytes",
        "hint": f"an admin raises the limit for /v1 with {MAX_BODY_ENV}",
    }


class Gate:
    """Pure ASGI middleware: auth and the body limit, before the app (and its body parsing) runs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Tokens,
        socket_path: str | None,
        limits: BodyLimits | None = None,
        reads: SharedReads | None = None,
    ) -> None:
        self.app = app
        self.reads = reads or SharedReads()
        self.tokens = tokens
        self.socket_path = socket_path
        self.limits = limits or BodyLimits.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = {key.lower(): value for key, value in scope["headers"]}
        length = _length(headers.get(b"content-length"))
        has_body = bool(length) or b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if (path == "/v1" or path.startswith("/v1/")) and (method, path) not in OPEN:
            try:
                caller = await self._authenticate(scope, headers.get(b"authorization"))
            except Unauthorized as error:
                await answer(send, 401, error_payload(error), close=has_body)
                return
            scope.setdefault("state", {})[CALLER_STATE] = caller
        limit = self.limits.for_path(path)
        if length is not None and length > limit:
            await answer(send, 413, too_large(limit), close=True)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        counted = _Counted(receive, send, limit)
        try:
            await self.app(scope, counted.receive, counted.send)
        except ClientDisconnect:
            if not counted.refused:
                raise
            # the app read on after the gate refused the body: the disconnect it was told of, nothing more

    async def _authenticate(self, scope: Scope, authorization: bytes | None) -> Caller:
        """The one place the caller is decided: the unix socket's owner is the admin; else the bearer token's person."""
        server = scope.get("server")
        if server is not None and server[1] is None and (self.socket_path is None or server[0] == self.socket_path):
            return Caller(local_actor(), admin=True)
        header = authorization.decode("latin-1") if authorization is not None else None
        # the store, on a worker thread; the same token's concurrent checks done once, none from before it came
        return await self.reads.read(("token", header), partial(self.tokens.verify, header))


class _Counted:
    """The body counted as the app receives it: past the limit, 413 (if nothing was answered yet) and
    a disconnect for the app; what the app sends after that is dropped."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.seen = 0
        self.started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.refused = True
                if not self.started:
                    self.started = True
                    await answer(self._send, 413, too_large(self.limit), close=True)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None  # the HTTP parser refuses it before the app sees it; counted anyway if it did not


async def answer(send: Send, status: int, payload: dict[str, Any], *, close: bool) -> None:
    """A JSON error answered by the gate; `close` ends the connection rather than read the body left unread."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
