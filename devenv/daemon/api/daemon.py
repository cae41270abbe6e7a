"""/v1 routes about the daemon itself: health, who is calling, the API's description, the backends,
shutdown; and the forge's push webhook.

/v1/health and /v1/hooks/git need no caller (the webhook proves its sender by signature); the API's
description and its browser page are routes like the others: a caller is needed.

No `from __future__ import annotations` here: the routes' types name the caller dependency handed to
`daemon_router`, a local, which FastAPI could not find if annotations were strings.
"""

import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from devenv import __version__, wire
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.api.jupyter_proxy import JupyterGateway
from devenv.daemon.services.access import Caller
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.hooks import EVENT_HEADER, SIGNATURE_HEADER, GitHooks
from devenv.errors import Unauthorized
from devenv.installed import AUTOSTARTED_ENV, build_id


def public_router(jupyter: JupyterGateway, hooks: GitHooks | None) -> APIRouter:
    """The routes anyone may call: no caller dependency."""
    router = APIRouter(prefix="/v1")

    @router.get("/health", tags=["daemon"], response_model=wire.Health, **allow(Rule.ANYONE))
    def health() -> dict[str, Any]:
        web = jupyter.public_url or jupyter.web_url
        return {
            "ok": True,
            "version": __version__,
            "build": build_id(),
            "autostarted": os.environ.get(AUTOSTARTED_ENV) == "1",
            "pid": os.getpid(),
            "web_url": web,
        }

    @router.post("/hooks/git", tags=["hooks"], **allow(Rule.ANYONE))
    async def git_hook(request: Request) -> dict[str, Any]:
        """A forge's push webhook, authenticated by its HMAC signature (see devenv/daemon/services/hooks.py)."""
        if hooks is None:
            raise Unauthorized("webhooks are off on this daemon")
        body = await request.body()
        await anyio.to_thread.run_sync(hooks.verify, body, request.headers.get(SIGNATURE_HEADER))
        return await anyio.to_thread.run_sync(hooks.handle, request.headers.get(EVENT_HEADER, ""), body)

    return router


def daemon_router(
    events: EventLog, backends: Backends, stop: Callable[[], None], caller: Callable[..., Caller | Awaitable[Caller]]
) -> APIRouter:
    """The daemon's own routes, behind the same caller check (`caller`) as the rest of /v1;
    `stop` asks the daemon to stop (POST /v1/daemon/shutdown)."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.get("/openapi.json", include_in_schema=False, **allow(Rule.MEMBER))
    def openapi(request: Request) -> dict[str, Any]:
        schema: dict[str, Any] = request.app.openapi()
        return schema

    @router.get("/docs", include_in_schema=False, **allow(Rule.MEMBER))
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/v1/openapi.json", title="devenvd API")

    @router.get("/whoami", tags=["daemon"], response_model=wire.Whoami, **allow(Rule.MEMBER))
    def whoami(actor: actor_type) -> dict[str, Any]:
        return {"actor": actor.name, "admin": actor.admin}

    @router.post("/daemon/shutdown", tags=["daemon"], response_model=wire.Done, **allow(Rule.ADMIN))
    def shutdown(actor: actor_type) -> dict[str, bool]:
        events.record(None, "daemon", "shutdown requested", actor=actor.name)
        stop()
        return {"ok": True}

    @router.get("/backends", tags=["daemon"], response_model=wire.BackendList, **allow(Rule.MEMBER))
    def list_backends() -> dict[str, Any]:
        """Where workspaces can run (the `backend:` names), and why one cannot be used."""
        entries = backends.entries.values()
        return {
            "items": [
                {
                    "name": entry.name,
                    "type": entry.type,
                    "url": entry.url,
                    "usable": entry.backend is not None,
                    "error": entry.error,
                }
                for entry in entries
            ]
        }

    return router
