"""The HTTP API under /v1: thin routes over the services, errors as JSON with stable codes.

`create_app` assembles it: error handlers, the gate, and one router per resource (api/workspaces.py,
events.py, daemon.py, secrets.py, dotfiles.py, hosts.py, offers.py, code.py, versioning.py).
Changing workspace routes answer a stream of newline-delimited JSON: live events while the work
goes on, then one final line with the workspace (or the error). A client that goes away does not
cancel the work; `devenv up` again re-attaches. Every route but /v1/health needs a caller: the
unix socket's owner, or a bearer token on TCP.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from devenv import __version__
from devenv.daemon.api.authz import Visibility, caller, check_declared
from devenv.daemon.api.code import code_router
from devenv.daemon.api.daemon import daemon_router, public_router
from devenv.daemon.api.delivery import delivery_router
from devenv.daemon.api.dotfiles import dotfiles_router
from devenv.daemon.api.events import event_router
from devenv.daemon.api.gate import Gate
from devenv.daemon.api.hosts import host_router
from devenv.daemon.api.images import image_router
from devenv.daemon.api.jupyter_proxy import JupyterGateway
from devenv.daemon.api.offers import offer_router
from devenv.daemon.api.projects import project_router
from devenv.daemon.api.secrets import secret_router
from devenv.daemon.api.versioning import versioning_router
from devenv.daemon.api.workspaces import snapshot_up_router, workspace_router
from devenv.daemon.services.access import Access
from devenv.daemon.services.code_step import store_for
from devenv.daemon.services.events import EventBus, EventLog
from devenv.daemon.services.hooks import GitHooks
from devenv.daemon.services.hosts import Hosts
from devenv.daemon.services.project_work import ProjectWork
from devenv.daemon.services.secrets import Secrets
from devenv.daemon.services.tokens import Tokens
from devenv.daemon.services.versioning import Versioning
from devenv.daemon.services.workspaces import WorkspaceService
from devenv.daemon.store.db import SharedReads
from devenv.errors import (
    BackendError,
    DaemonUnreachable,
    DevenvError,
    EngineUnreachable,
    FileExists,
    Forbidden,
    HostKeyChanged,
    HostNotFound,
    LockMismatch,
    LockMissing,
    NoCapacity,
    SecretNotFound,
    SnapshotNotFound,
    SpecInvalid,
    Unauthorized,
    UsageError,
    WorkspaceBusy,
    WorkspaceNotFound,
    error_payload,
)


@dataclass
class Services:
    """Everything routes need, built once by the daemon and handed to the app factory."""

    workspaces: WorkspaceService
    events: EventLog
    bus: EventBus
    tokens: Tokens
    access: Access
    jupyter: JupyterGateway
    shutdown: Any = None  # callable that stops the daemon
    secrets: Secrets | None = None
    versioning: Versioning | None = None
    hooks: GitHooks | None = None
    hosts: Hosts | None = None


_STATUS = {
    WorkspaceNotFound: 404,
    SnapshotNotFound: 404,
    SecretNotFound: 404,
    SpecInvalid: 422,
    LockMismatch: 409,
    LockMissing: 409,
    UsageError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    WorkspaceBusy: 409,
    EngineUnreachable: 502,
    DaemonUnreachable: 502,
    HostNotFound: 404,
    HostKeyChanged: 409,
    NoCapacity: 409,
    FileExists: 409,
    BackendError: 502,
}


def _status(error: DevenvError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400 if error.exit_code == 2 else 500


def _invalid_request(error: RequestValidationError) -> dict[str, Any]:
    """A malformed request, told without echoing what was sent (FastAPI's answer would; a body may hold a secret)."""
    problems = [
        {"loc": list(item.get("loc", ())), "msg": str(item.get("msg", "")), "type": str(item.get("type", ""))}
        for item in error.errors()
    ]
    where = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in problems)
    return {
        "code": UsageError.code,
        "message": f"the daemon refused a malformed request: {where}",
        "hint": "the client and the daemon may be different versions of devenv",
        "errors": problems,
    }


class ErrorResponse(JSONResponse):
    """An error as JSON in ASCII: what a request sent may come back in a message, a lone surrogate too,
    which UTF-8 cannot carry (an escaped \\udXXX can)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def _devenv_error(_request: Request, error: DevenvError) -> JSONResponse:
    return ErrorResponse(error_payload(error), status_code=_status(error))


async def _malformed(_request: Request, error: RequestValidationError) -> JSONResponse:
    return ErrorResponse(_invalid_request(error), status_code=422)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # streams and engine calls run on worker threads: allow many at once (ten `up`s, followers)
    anyio.to_thread.current_default_thread_limiter().total_tokens = 256
    yield
    await app.state.services.jupyter.aclose()


def _stop_daemon(services: Services) -> None:
    """Asks the daemon to stop, if it said how (process/server.py sets `shutdown` once the app is made)."""
    if services.shutdown is not None:
        services.shutdown()


def create_app(services: Services, *, socket_path: str | None = None) -> FastAPI:
    """The app: error handlers, the gate (auth, body limits), then every router; each route declares
    who may call it (api/authz.py), and an app with a route that does not is refused."""
    # the API's description and its browser page are routes like the others: a caller is needed
    app = FastAPI(
        title="devenvd", version=__version__, openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan
    )
    app.exception_handler(DevenvError)(_devenv_error)
    app.exception_handler(RequestValidationError)(_malformed)
    reads = SharedReads()  # the hot path's store reads: a few threads, identical concurrent reads done once
    app.add_middleware(Gate, tokens=services.tokens, socket_path=socket_path, reads=reads)  # auth, body limit first
    app.state.services = services
    app.state.visibility = visibility = Visibility(services.workspaces.sessions)
    ws = services.workspaces
    code_store = store_for(ws.projects.root)

    app.include_router(public_router(services.jupyter, services.hooks))
    app.include_router(daemon_router(services.events, ws.backends, functools.partial(_stop_daemon, services), caller))
    app.include_router(
        workspace_router(ws, services.access, services.jupyter, services.bus, visibility, reads, code_store, caller)
    )
    app.include_router(event_router(services.events, services.bus, visibility, caller))
    app.include_router(snapshot_up_router(services.versioning, ws, services.access, services.bus, caller))
    if services.secrets is not None:
        app.include_router(secret_router(services.secrets, caller))
    app.include_router(dotfiles_router(ws.sessions, services.events, caller))  # each person's own dotfiles repo
    if services.hosts is not None:
        app.include_router(host_router(services.hosts, caller))
    app.include_router(offer_router(ws.backends, caller))
    work = ProjectWork(ws.projects, ws.backends, code_store)
    app.include_router(project_router(work, caller))
    app.include_router(delivery_router(work, caller))
    app.include_router(image_router(work, caller))
    app.include_router(code_router(code_store, ws, services.events, caller))
    if services.versioning is not None:
        app.include_router(versioning_router(services.versioning, services.access, services.bus, caller))
    services.jupyter.mount(app)
    check_declared(app)
    return app
