"""JupyterLab in the browser, through the daemon: a per-workspace URL that checks the person each time.

`devenv jupyter WS` asks for a login link. The link holds a single-use ticket that lasts a minute;
opening it sets a session cookie (HttpOnly, SameSite=Lax, scoped to /jupyter/WS/) and redirects
to the clean URL, so no credential stays in the address bar, the history or a Referer. Every HTTP
request and websocket is then checked against the person's grant and forwarded to JupyterLab on
the container's own network, with that server's secret in a header that JupyterLab's devenv
identity provider trusts (its XSRF checks stay on). When a person's access ends their sessions are
dropped and their websockets closed at once; other people are untouched.

The owner reaches the workspace's own JupyterLab (port 8888). A grantee gets a JupyterLab server of
their own, started on their first request (`end-sessions --jupyter`): it runs with their marker
group, so it and every kernel, terminal and process under it ends with their access, and nobody
runs code in someone else's kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import http.cookiejar
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect

from devenv.backends.base import JUPYTER_PORT, Handle
from devenv.daemon.services.access import Access, Caller
from devenv.daemon.services.access_container import END_SESSIONS
from devenv.daemon.services.backends import Backends
from devenv.daemon.store import states
from devenv.daemon.store.tables import Workspace
from devenv.errors import BackendError, DevenvError, UsageError, WorkspaceBusy

log = logging.getLogger("devenvd.jupyter")

PREFIX = "/jupyter"
COOKIE = "devenv_jupyter"
TICKET_SECONDS = 60.0
SESSION_SECONDS = 12 * 3600.0
SECRET_HEADER = "X-Devenv-Proxy-Secret"
PERSON_HEADER = "X-Devenv-Person"
CLOSE_REVOKED = 4403  # websocket close code after a revoke (JupyterLab shows the kernel as disconnected)
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
_DROP_UP = _HOP | {"cookie", "origin", "referer", "content-length", SECRET_HEADER.lower(), PERSON_HEADER.lower()}


_CLOSING: set[asyncio.Future[Any]] = set()  # held until done: the loop keeps only weak references to tasks


def _schedule(close: Callable[[], Any]) -> None:
    """On the loop (call_soon_threadsafe): start closing one websocket."""
    task = asyncio.ensure_future(close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class _Pass:
    person: str
    workspace: str
    expires: float


class JupyterGateway:
    def __init__(self, access: Access, sessions: sessionmaker[Session], backends: Backends) -> None:
        self.access = access
        self.sessions = sessions
        self.backends = backends
        self.web_url: str | None = None  # the daemon's browser-facing address, set when it listens
        self.public_url: str | None = None  # DEVENV_PUBLIC_URL: what browsers use (a TLS proxy in front)
        self._tickets: dict[str, _Pass] = {}
        self._passes: dict[str, _Pass] = {}
        self._allowed: dict[tuple[str, str], float] = {}  # (workspace, person) -> checked until
        self._sockets: defaultdict[tuple[str, str], set[Callable[[], Any]]] = defaultdict(set)
        self._upstreams: dict[tuple[str, str], tuple[tuple[str, int], str]] = {}  # (ws, person) -> address, secret
        self._starting: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        access.on_end.append(self.end)

    # -- links and passes --------------------------------------------------------------------------

    def login_link(self, caller: Caller, workspace: str, base_url: str | None) -> dict[str, Any]:
        """A single-use link that lets `caller` into `workspace`'s JupyterLab for a minute."""
        self.access.require(caller, workspace, "jupyter")
        self._running(workspace)
        base = (self.public_url or base_url or self.web_url or "").rstrip("/")
        if not base:
            raise UsageError(
                "this daemon serves no web address for JupyterLab",
                hint="start devenvd with DEVENV_WEB_LISTEN=tcp://127.0.0.1:PORT (or --listen)",
            )
        ticket = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._tickets = {key: held for key, held in self._tickets.items() if held.expires > now}
            self._tickets[_digest(ticket)] = _Pass(caller.name, workspace, now + TICKET_SECONDS)
        self.access.events.record(workspace, "access", f"Jupyter login link for {caller.name}", actor=caller.name)
        return {
            "url": f"{base}{PREFIX}/{workspace}/devenv-login?ticket={ticket}",
            "clean_url": f"{base}{PREFIX}/{workspace}/lab",
            "expires_in": TICKET_SECONDS,
        }

    def _running(self, workspace: str) -> Workspace:
        ws = self.access.records.get(workspace)
        if ws is None or not states.container_up(ws.state, ws.error_code):
            raise WorkspaceBusy(
                f"workspace {workspace} is {ws.state if ws else 'gone'}, not running",
                hint=f"`devenv start {workspace}` first",
            )
        return ws

    def _redeem(self, ticket: str, workspace: str) -> str | None:
        with self._lock:
            held = self._tickets.pop(_digest(ticket), None)
        if held is None or held.expires < time.time() or held.workspace != workspace:
            return None
        if not self.access.allowed(held.person, workspace, "jupyter"):
            return None
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._passes[_digest(session_id)] = _Pass(held.person, workspace, time.time() + SESSION_SECONDS)
        return session_id

    def person(self, cookie: str | None, workspace: str) -> str | None:
        """The person behind a session cookie, if they may still use this workspace's JupyterLab."""
        if not cookie:
            return None
        now = time.time()
        with self._lock:
            held = self._passes.get(_digest(cookie))
            if held is None or held.workspace != workspace or held.expires < now:
                return None
            if self._allowed.get((workspace, held.person), 0.0) > now:
                return held.person
        if not self.access.allowed(held.person, workspace, "jupyter"):
            return None
        with self._lock:
            self._allowed[(workspace, held.person)] = now + 1.0
        return held.person

    def end(self, workspace: str, person: str) -> None:
        """Access ended: forget the person's sessions here and close their websockets (any thread)."""
        with self._lock:
            self._passes = {
                key: held
                for key, held in self._passes.items()
                if not (held.workspace == workspace and held.person == person)
            }
            self._allowed.pop((workspace, person), None)
            self._upstreams.pop((workspace, person), None)
            closers = list(self._sockets.pop((workspace, person), ()))
            loop = self._loop
        if closers and loop is not None:
            for close in closers:
                loop.call_soon_threadsafe(_schedule, close)

    # -- upstream ----------------------------------------------------------------------------------

    def _upstream(self, workspace: str, person: str, *, fresh: bool = False) -> tuple[tuple[str, int], str]:
        """Where `person`'s JupyterLab in `workspace` listens, and its secret (the owner's: port 8888)."""
        key = (workspace, person)
        with self._lock:
            cached = None if fresh else self._upstreams.get(key)
        if cached is not None:
            return cached
        ws = self._running(workspace)
        backend, handle = self.backends.get(ws.backend), Handle.for_workspace(ws.name)
        if person == ws.owner:
            port, secret = JUPYTER_PORT, self.access.jupyter_secret(workspace)
        else:
            with self._starting[key]:  # a page asks for many things at once: one server start
                with self._lock:
                    cached = None if fresh else self._upstreams.get(key)
                if cached is not None:
                    return cached
                port = self._person_server(backend, handle, workspace, person)
            secret = self.access.person_jupyter_secret(workspace, person)
        found = (backend.internal_address(handle, port), secret)
        with self._lock:
            self._upstreams[key] = found
        return found

    def _person_server(self, backend: Any, handle: Handle, workspace: str, person: str) -> int:
        """A grantee's own JupyterLab, started unless it runs: its port."""
        marker = self.access.marker(workspace, person)
        stream = backend.exec(
            handle, [*END_SESSIONS, "--jupyter", str(marker.jupyter_gid), workspace], user="root", workdir="/"
        )
        output = b"".join(chunk for _, chunk in stream).decode(errors="replace").strip()
        last = output.splitlines()[-1] if output else ""
        if stream.exit_code != 0 or not last.isdigit():
            log.warning("starting %s's JupyterLab in %s: exit %s: %s", person, workspace, stream.exit_code, output)
            raise BackendError(
                f"{person}'s JupyterLab in {workspace} did not start (exit {stream.exit_code})",
                hint="`devenv logs` may say why; the workspace's image may predate per-person "
                "JupyterLab servers: `devenv rebuild`",
            )
        return int(last)

    def _headers_up(self, headers: Any, person: str, address: tuple[str, int], secret: str) -> dict[str, str]:
        out = {key: value for key, value in headers.items() if key.lower() not in _DROP_UP}
        cookies = [part.strip() for part in headers.get("cookie", "").split(";") if part.strip()]
        kept = [part for part in cookies if not part.startswith(COOKIE + "=")]
        if kept:
            out["cookie"] = "; ".join(kept)
        # Origin and Referer were checked here; JupyterLab compares them with its own host.
        if "origin" in headers:
            out["origin"] = f"http://{address[0]}:{address[1]}"
        if "referer" in headers:
            out["referer"] = f"http://{address[0]}:{address[1]}{urlsplit(headers['referer']).path}"
        out[SECRET_HEADER] = secret
        out[PERSON_HEADER] = person
        return out

    # -- routes ------------------------------------------------------------------------------------

    def mount(self, app: FastAPI) -> None:
        @app.get(PREFIX + "/{workspace}/devenv-login", include_in_schema=False)
        async def login(workspace: str, request: Request, ticket: str = "") -> Response:
            session_id = self._redeem(ticket, workspace)
            if session_id is None:
                return _refusal(401, workspace, "this login link was used already, has expired or is not yours")
            response = RedirectResponse(f"{PREFIX}/{workspace}/lab", status_code=303)
            response.set_cookie(
                COOKIE,
                session_id,
                max_age=int(SESSION_SECONDS),
                path=f"{PREFIX}/{workspace}/",
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https" or (self.public_url or "").startswith("https:"),
            )
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            return response

        @app.api_route(
            PREFIX + "/{workspace}/{path:path}",
            include_in_schema=False,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        )
        async def proxy(workspace: str, path: str, request: Request) -> Response:
            person = self.person(request.cookies.get(COOKIE), workspace)
            if person is None:
                return _refusal(
                    403 if request.cookies.get(COOKIE) else 401,
                    workspace,
                    "you have no Jupyter access to this workspace (now)",
                )
            if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request.headers):
                return _refusal(403, workspace, "cross-origin request refused")
            return await self._forward(request, workspace, person, path)

        @app.websocket(PREFIX + "/{workspace}/{path:path}")
        async def socket(websocket: WebSocket, workspace: str, path: str) -> None:
            person = self.person(websocket.cookies.get(COOKIE), workspace)
            if person is None or not _same_origin(websocket.headers):
                await websocket.close(code=CLOSE_REVOKED)
                return
            await self._relay(websocket, workspace, person, path)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _forward(self, request: Request, workspace: str, person: str, path: str) -> Response:
        if self._client is None:
            # No cookie jar: a cookie JupyterLab sets for one browser must never ride along on another's
            # requests (httpx would otherwise keep and resend it). Browsers keep their own cookies.
            refuse_all = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(10.0, read=None),
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=256),
                cookies=refuse_all,
            )
        body = await request.body()
        for attempt in (0, 1):
            try:
                address, secret = await asyncio.to_thread(self._upstream, workspace, person, fresh=attempt == 1)
                url = httpx.URL(
                    f"http://{address[0]}:{address[1]}{PREFIX}/{workspace}/{path}", query=request.url.query.encode()
                )
                upstream = self._client.build_request(
                    request.method,
                    url,
                    content=body,
                    headers=self._headers_up(request.headers, person, address, secret),
                )
                response = await self._client.send(upstream, stream=True)
                break
            except httpx.TransportError as error:
                if attempt:
                    return _refusal(
                        502,
                        workspace,
                        f"JupyterLab did not answer ({error.__class__.__name__}); it may still be starting",
                    )
            except DevenvError as error:
                return _refusal(502 if attempt else 503, workspace, error.render())
        headers = [(key, value) for key, value in response.headers.multi_items() if key.lower() not in _HOP]
        out = StreamingResponse(
            response.aiter_raw(), status_code=response.status_code, background=BackgroundTask(response.aclose)
        )
        out.raw_headers = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers]
        return out

    async def _relay(self, websocket: WebSocket, workspace: str, person: str, path: str) -> None:
        import websockets.asyncio.client
        import websockets.exceptions
        from websockets.typing import Subprotocol

        try:
            address, secret = await asyncio.to_thread(self._upstream, workspace, person)
        except DevenvError:
            await websocket.close(code=1011)
            return
        query = websocket.url.query
        url = f"ws://{address[0]}:{address[1]}{PREFIX}/{workspace}/{path}" + (f"?{query}" if query else "")
        offered = [
            Subprotocol(p.strip()) for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()
        ]
        headers = self._headers_up(websocket.headers, person, address, secret)
        headers = {
            key: value
            for key, value in headers.items()
            if not key.lower().startswith("sec-websocket") and key.lower() != "origin"
        }
        try:
            upstream = await websockets.asyncio.client.connect(
                url,
                additional_headers=headers,
                subprotocols=offered or None,
                max_size=None,
                compression=None,
                open_timeout=10,
                proxy=None,
            )
        except (OSError, websockets.exceptions.WebSocketException, TimeoutError):
            await websocket.close(code=1011)
            return
        await websocket.accept(subprotocol=upstream.subprotocol)
        key = (workspace, person)

        async def close_revoked() -> None:
            await upstream.close(code=1000)
            with contextlib.suppress(RuntimeError):  # closed already
                await websocket.close(code=CLOSE_REVOKED, reason="access revoked")

        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._sockets[key].add(close_revoked)
        try:
            await _pump(websocket, upstream)
        finally:
            with self._lock:
                self._sockets.get(key, set()).discard(close_revoked)
            await upstream.close()


async def _pump(websocket: WebSocket, upstream: Any) -> None:
    async def browser_to_jupyter() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    async def jupyter_to_browser() -> None:
        async for message in upstream:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=1000)

    tasks = [asyncio.ensure_future(browser_to_jupyter()), asyncio.ensure_future(jupyter_to_browser())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await task  # the other side went away: nothing left to relay


def _same_origin(headers: Any) -> bool:
    """A browser's Origin, when it sends one, must be this daemon's own (no cross-site requests)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    return urlsplit(origin).netloc == host


def _refusal(status: int, workspace: str, why: str) -> Response:
    name, why = html.escape(workspace), html.escape(why)
    page = (
        f"<!doctype html><title>devenv: JupyterLab of {name}</title><h1>{status}</h1><p>{why}.</p>"
        f"<p>Run <code>devenv jupyter {name}</code> for a new link, or ask the workspace's owner for "
        f"access.</p>"
    )
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
