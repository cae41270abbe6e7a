"""The HTTP API under /v1: thin routes over the services, errors as JSON with stable codes.

Changing workspace routes answer a stream of newline-delimited JSON: live events while the work
goes on, then one final line with the workspace (or the error). A client that goes away does not
cancel the work; `devenv up` again re-attaches. Every route but /v1/health needs a caller: the
unix socket's owner, or a bearer token on TCP.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from devenv import __version__, wire
from devenv.daemon.api.authz import (
    TEAM_EVENT_KINDS,
    Rule,
    Visibility,
    allow,
    caller,
    check_declared,
    event_visible,
    require,
)
from devenv.daemon.api.code import CodeRef, code_router
from devenv.daemon.api.dotfiles import dotfiles_router
from devenv.daemon.api.gate import Gate
from devenv.daemon.api.hosts import host_router
from devenv.daemon.api.jupyter_proxy import JupyterGateway
from devenv.daemon.api.offers import offer_router
from devenv.daemon.api.secrets import secret_router
from devenv.daemon.api.streams import NDJSON, Shared, line, settle_stream
from devenv.daemon.api.streams import follow_events as follow_stream
from devenv.daemon.api.versioning import versioning_router
from devenv.daemon.services.access import Access, Caller, parse_ttl
from devenv.daemon.services.code_step import store_for
from devenv.daemon.services.events import EventBus, EventLog, LiveEvent
from devenv.daemon.services.hooks import EVENT_HEADER, SIGNATURE_HEADER, GitHooks
from devenv.daemon.services.hosts import Hosts
from devenv.daemon.services.projects import Upload, check_upload
from devenv.daemon.services.secrets import Secrets
from devenv.daemon.services.tokens import Tokens
from devenv.daemon.services.versioning import Versioning
from devenv.daemon.services.workspaces import Accepted, WorkspaceService, workspace_json
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
    SpecIssue,
    Unauthorized,
    UsageError,
    WorkspaceBusy,
    WorkspaceNotFound,
    error_payload,
)
from devenv.spec.models import name_hint, valid_name

WORKSPACE_USER = "dev"
MAX_ID = 2**63 - 1  # the store's integer ids: a larger `after` is a client's mistake, not a 500
MAX_TTL_SECONDS = 366 * 86400  # a grant that should outlive a year is a standing one: no --ttl


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


class ProjectUpload(BaseModel):
    spec_path: str = Field(description="the spec as the person named it, for messages")
    files: dict[str, str] = Field(description="devenv.yaml, devenv.lock, requirement files: path -> text")


class UpRequest(ProjectUpload):
    name: str | None = Field(default=None, description="workspace name (default: the spec's name)")
    on: str | None = Field(default=None, description="the backend (host) to run on, or \"auto\" to place it; "
                                                    "default: the spec's `backend:`")
    code: CodeRef | None = Field(default=None, description="the project folder uploaded with PUT /v1/code")


class SnapshotUpRequest(BaseModel):
    name: str | None = Field(default=None, description="the new workspace's name (default: WORKSPACE-ID)")


class RebuildRequest(BaseModel):
    project: ProjectUpload | None = None


class CertificateRequest(BaseModel):
    public_key: str = Field(description="the caller's OpenSSH public key line")


class GrantRequest(BaseModel):
    person: str = Field(description="who gets access (a token's name; the daemon's own user)")
    ssh: bool = False
    jupyter: bool = False
    share_secrets: bool = Field(default=False, description="also place the owner's own secrets while the "
                                                           "workspace is shared (default: team secrets only)")
    ttl: str | None = Field(default=None, max_length=32,
                            description="ends by itself after this long: 90s, 30m, 4h, 2d")


class ExecRequest(BaseModel):
    argv: list[str]
    user: str = "dev"
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None


_STATUS = {WorkspaceNotFound: 404, SnapshotNotFound: 404, SecretNotFound: 404, SpecInvalid: 422, LockMismatch: 409,
           LockMissing: 409, UsageError: 400, Unauthorized: 401, Forbidden: 403, WorkspaceBusy: 409,
           EngineUnreachable: 502, DaemonUnreachable: 502, HostNotFound: 404, HostKeyChanged: 409, NoCapacity: 409,
           FileExists: 409, BackendError: 502}


def _status(error: DevenvError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400 if error.exit_code == 2 else 500


def _invalid_request(error: RequestValidationError) -> dict[str, Any]:
    """A malformed request, told without echoing what was sent (FastAPI's answer would; a body may hold a secret)."""
    problems = [{"loc": list(item.get("loc", ())), "msg": str(item.get("msg", "")), "type": str(item.get("type", ""))}
                for item in error.errors()]
    where = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in problems)
    return {"code": UsageError.code, "message": f"the daemon refused a malformed request: {where}",
            "hint": "the client and the daemon may be different versions of devenv", "errors": problems}


def _ttl(text: str) -> float:
    seconds = parse_ttl(text)
    if not math.isfinite(seconds) or seconds > MAX_TTL_SECONDS:
        raise UsageError(f"--ttl {text!r}: at most {MAX_TTL_SECONDS // 86400} days",
                         hint="leave --ttl out for a grant that lasts until it is revoked")
    return seconds


class ErrorResponse(JSONResponse):
    """An error as JSON in ASCII: what a request sent may come back in a message, a lone surrogate too,
    which UTF-8 cannot carry (an escaped \\udXXX can)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _check_name(name: str | None, where: str = "the request") -> None:
    """A workspace name from a request, checked before anything looks it up (a lone surrogate, a newline);
    told as the spec's own `name:` would be, so forms show it at their name field."""
    if name is not None and not valid_name(name):
        raise SpecInvalid([SpecIssue(where, None, None, "name", f"{name[:80]!r} is not a valid name",
                                     name_hint(name))])


def _upload(body: ProjectUpload) -> Upload:
    return check_upload(body.spec_path, body.files)


def _over_tcp(request: Request) -> bool:
    server = request.scope.get("server")
    return server is not None and server[1] is not None


Actor = Annotated[Caller, Depends(caller)]


def create_app(services: Services, *, socket_path: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # streams and engine calls run on worker threads: allow many at once (ten `up`s, followers)
        anyio.to_thread.current_default_thread_limiter().total_tokens = 256
        yield
        await services.jupyter.aclose()

    # the API's description and its browser page are routes like the others: a caller is needed
    app = FastAPI(title="devenvd", version=__version__, openapi_url=None, docs_url=None, redoc_url=None,
                  lifespan=lifespan)

    @app.exception_handler(DevenvError)
    async def _devenv_error(_request: Request, error: DevenvError) -> JSONResponse:
        return ErrorResponse(error_payload(error), status_code=_status(error))

    @app.exception_handler(RequestValidationError)
    async def _malformed(_request: Request, error: RequestValidationError) -> JSONResponse:
        return ErrorResponse(_invalid_request(error), status_code=422)

    reads = SharedReads()  # the hot path's store reads: a few threads, identical concurrent reads done once
    app.add_middleware(Gate, tokens=services.tokens, socket_path=socket_path, reads=reads)  # auth, body limit first
    app.state.services = services
    app.state.visibility = visibility = Visibility(services.workspaces.sessions)
    views: Shared[str, set[str]] = Shared(visibility.workspaces)  # person -> theirs; read once a second
    ws = services.workspaces
    code_store = store_for(ws.projects.root)

    @app.get("/v1/health", tags=["daemon"], response_model=wire.Health, **allow(Rule.ANYONE))
    def health() -> dict[str, Any]:
        web = services.jupyter.public_url or services.jupyter.web_url
        return {"ok": True, "version": __version__, "pid": os.getpid(), "web_url": web}

    @app.post("/v1/hooks/git", tags=["hooks"], **allow(Rule.ANYONE))
    async def git_hook(request: Request) -> dict[str, Any]:
        """A forge's push webhook, authenticated by its HMAC signature (see devenv/daemon/services/hooks.py)."""
        if services.hooks is None:
            raise Unauthorized("webhooks are off on this daemon")
        hooks, body = services.hooks, await request.body()
        await anyio.to_thread.run_sync(hooks.verify, body, request.headers.get(SIGNATURE_HEADER))
        return await anyio.to_thread.run_sync(hooks.handle, request.headers.get(EVENT_HEADER, ""), body)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(caller)])

    @v1.get("/openapi.json", include_in_schema=False, **allow(Rule.MEMBER))
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @v1.get("/docs", include_in_schema=False, **allow(Rule.MEMBER))
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/v1/openapi.json", title="devenvd API")

    @v1.get("/whoami", tags=["daemon"], response_model=wire.Whoami, **allow(Rule.MEMBER))
    def whoami(actor: Actor) -> dict[str, Any]:
        return {"actor": actor.name, "admin": actor.admin}

    @v1.post("/daemon/shutdown", tags=["daemon"], response_model=wire.Done, **allow(Rule.ADMIN))
    def shutdown(actor: Actor) -> dict[str, bool]:
        services.events.record(None, "daemon", "shutdown requested", actor=actor.name)
        if services.shutdown is not None:
            services.shutdown()
        return {"ok": True}

    @v1.get("/backends", tags=["daemon"], response_model=wire.BackendList, **allow(Rule.MEMBER))
    def list_backends() -> dict[str, Any]:
        """Where workspaces can run (the `backend:` names), and why one cannot be used."""
        entries = ws.backends.entries.values()
        return {"items": [{"name": entry.name, "type": entry.type, "url": entry.url,
                           "usable": entry.backend is not None, "error": entry.error} for entry in entries]}

    @v1.get("/workspaces", tags=["workspaces"], response_class=JSONResponse, response_model=wire.WorkspacePage,
            **allow(Rule.MEMBER))  # encoded by page_json: the model documents it (tests/unit/test_wire_models.py)
    async def list_workspaces(actor: Actor, owner: str | None = None,
                              limit: Annotated[int, Query(ge=1, le=1000)] = 100, after: str | None = None) -> Response:
        """The workspaces the caller may see: their own and those granted to them (an admin: every one).
        One read of the store on a worker thread, shared by the same request's callers (daemon/store/db.py)."""
        person = None if actor.admin else actor.name  # every admin sees the same

        def page() -> bytes:
            return ws.page_json(owner=owner, limit=limit, after=after, visible=visibility.visible_clause(actor))

        return Response(await reads.read(("workspaces", person, owner, limit, after), page),
                        media_type="application/json")

    @v1.get("/workspaces/{name}", tags=["workspaces"], response_model=wire.WorkspaceView, **allow(Rule.VIEWER))
    def get_workspace(name: str) -> dict[str, Any]:
        row = ws.get(name)
        return workspace_json(row, price=ws.price(row))

    @v1.get("/workspaces/{name}/project", tags=["workspaces"], response_model=wire.ProjectSummary,
            **allow(Rule.VIEWER))
    def get_project(name: str) -> dict[str, Any]:
        return ws.project_summary(name)

    @v1.get("/workspaces/{name}/lock", tags=["workspaces"], response_model=wire.LockText, **allow(Rule.VIEWER))
    def get_lock(name: str) -> dict[str, str | None]:
        return {"lock": ws.lock_text(name)}

    def _follow(do: Any) -> StreamingResponse:
        """Subscribe first, then act, then stream until the workspace settles at the new generation."""
        subscription = services.bus.subscribe_async(None)
        try:
            accepted: Accepted = do()
        except BaseException:
            subscription.close()
            raise
        return StreamingResponse(settle_stream(accepted, subscription, ws), media_type=NDJSON)

    @v1.post("/workspaces", tags=["workspaces"], **allow(Rule.MEMBER))
    def up(body: UpRequest, actor: Actor) -> StreamingResponse:
        _check_name(body.name, body.spec_path)
        upload = _upload(body)
        if body.name:
            services.access.require_owner(actor, body.name, "up")
        if body.code is not None:
            code_store.require(body.code.hash, actor.name, admin=actor.admin)
        code = body.code.model_dump() if body.code is not None else None
        return _follow(lambda: _up_owned(actor, upload, body.name, body.on, code))

    def _up_owned(actor: Caller, upload: Upload, name: str | None, on: str | None,
                  code: dict[str, Any] | None) -> Accepted:
        if name is None:  # the spec's name: known once the spec is read
            services.access.require_owner(actor, ws.projects.open(upload).spec.name, "up")
        return ws.up(actor.name, upload, name, on=on, code=code)

    @v1.post("/workspaces/{name}/stop", tags=["workspaces"], **allow(Rule.OWNER))
    def stop(name: str, actor: Actor) -> StreamingResponse:
        return _follow(lambda: ws.stop(actor.name, name))

    @v1.post("/workspaces/{name}/start", tags=["workspaces"], **allow(Rule.VIEWER))
    def start(name: str, actor: Actor) -> StreamingResponse:
        """Its owner's, and anyone's it is granted to: a teammate may wake a workspace that stopped while idle."""
        return _follow(lambda: ws.start(actor.name, name))

    @v1.post("/workspaces/{name}/rebuild", tags=["workspaces"], **allow(Rule.OWNER))
    def rebuild(name: str, body: RebuildRequest, actor: Actor) -> StreamingResponse:
        upload = _upload(body.project) if body.project else None
        return _follow(lambda: ws.rebuild(actor.name, name, upload))

    @v1.delete("/workspaces/{name}", tags=["workspaces"], **allow(Rule.OWNER))
    def remove(name: str, actor: Actor, keep_volume: bool = False) -> StreamingResponse:
        return _follow(lambda: ws.remove(actor.name, name, keep_volume=keep_volume))

    @v1.post("/workspaces/{name}/ssh/certificate", tags=["access"], response_model=wire.SshCertificate,
             **allow(Rule.SSH))
    def ssh_certificate(name: str, body: CertificateRequest, actor: Actor) -> dict[str, Any]:
        return services.access.certificate(actor, name, body.public_key)

    @v1.get("/workspaces/{name}/access", tags=["access"], response_model=wire.AccessList, **allow(Rule.VIEWER))
    def list_access(name: str, actor: Actor, ended: bool = False) -> dict[str, Any]:
        return services.access.list(actor, name, ended=ended)

    @v1.post("/workspaces/{name}/access", tags=["access"], response_model=wire.GrantView, **allow(Rule.OWNER))
    def grant_access(name: str, body: GrantRequest, actor: Actor) -> dict[str, Any]:
        ttl = _ttl(body.ttl) if body.ttl else None
        return services.access.grant(actor, name, body.person, ssh=body.ssh, jupyter=body.jupyter, ttl=ttl,
                                     share_secrets=body.share_secrets)

    @v1.delete("/workspaces/{name}/access/{person}", tags=["access"], response_model=wire.GrantView,
               **allow(Rule.OWNER))
    def revoke_access(name: str, person: str, actor: Actor) -> dict[str, Any]:
        return services.access.revoke(actor, name, person)

    @v1.post("/workspaces/{name}/jupyter/login", tags=["access"], response_model=wire.JupyterLink,
             **allow(Rule.JUPYTER))
    def jupyter_login(name: str, request: Request, actor: Actor) -> dict[str, Any]:
        base = str(request.base_url) if _over_tcp(request) else None
        return services.jupyter.login_link(actor, name, base)

    @v1.post("/workspaces/{name}/exec", tags=["workspaces"], **allow(Rule.SSH))
    def exec_command(name: str, body: ExecRequest, actor: Actor) -> StreamingResponse:
        """A command inside is as much as a shell (SSH access); as another user than `dev`, the owner's only."""
        if body.user != WORKSPACE_USER:
            require(visibility, actor, Rule.OWNER, {"name": name})
        stream = ws.exec(actor.name, name, body.argv, user=body.user, env=body.env, workdir=body.workdir)

        def frames() -> Iterator[bytes]:
            try:
                for which, chunk in stream:
                    yield line({which: base64.b64encode(chunk).decode()})
                yield line({"exit": stream.exit_code})
            except DevenvError as error:
                yield line({"error": error_payload(error)})

        return StreamingResponse(frames(), media_type=NDJSON)

    @v1.get("/workspaces/{name}/logs", tags=["workspaces"], **allow(Rule.SSH))
    def logs(name: str, follow: bool = False,
             tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None) -> StreamingResponse:
        """A workspace's output is as private as its shell."""
        chunks = ws.logs(name, follow=follow, tail=tail)
        return StreamingResponse(chunks, media_type="application/octet-stream")

    @v1.get("/events", tags=["events"], response_model=wire.EventList, **allow(Rule.MEMBER))
    def events(actor: Actor, workspace: str | None = None, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
               limit: Annotated[int, Query(ge=1, le=10000)] = 200) -> dict[str, Any]:
        """Events of the workspaces the caller may see (an admin: all, the daemon's own too)."""
        names = visibility.visible(actor)
        return {"items": services.events.query(workspace, after=after, limit=limit, workspaces=names,
                                               owner=actor.name, team_kinds=TEAM_EVENT_KINDS)}

    @v1.get("/events/follow", tags=["events"], **allow(Rule.MEMBER))
    def follow_events(actor: Actor, workspace: str | None = None) -> StreamingResponse:
        """Stored events as they happen; no worker thread is held while the stream waits."""
        if actor.admin:
            return StreamingResponse(follow_stream(services.bus, workspace), media_type=NDJSON)

        def shown(event: LiveEvent) -> bool:  # on the event loop, for every event: from memory only
            return event_visible(actor.name, views.peek(actor.name), event.workspace, event.owner, event.kind,
                                 event.actor)

        return StreamingResponse(follow_stream(services.bus, workspace, shown, lambda: views.get(actor.name)),
                                 media_type=NDJSON)

    @v1.post("/snapshots/{snapshot_id}/up", tags=["versioning"], **allow(Rule.SNAPSHOT))
    def up_from_snapshot(snapshot_id: str, body: SnapshotUpRequest, actor: Actor) -> StreamingResponse:
        """A workspace at exactly a snapshot's versions (owned by the caller), streamed like `up`.

        The name (given, or the snapshot's default) must be free or the caller's: never a way to restart
        or take over another person's workspace."""
        assert services.versioning is not None
        versioning = services.versioning
        _check_name(body.name)
        name = body.name or versioning.default_name(snapshot_id)
        services.access.require_owner(actor, name, "up")
        return _follow(lambda: versioning.up(actor.name, snapshot_id, name))

    app.include_router(v1)
    if services.secrets is not None:
        app.include_router(secret_router(services.secrets, caller))
    app.include_router(dotfiles_router(ws.sessions, services.events, caller))  # each person's own dotfiles repo
    if services.hosts is not None:
        app.include_router(host_router(services.hosts, caller))
    app.include_router(offer_router(ws.backends, caller))
    app.include_router(code_router(code_store, ws, services.events, caller))
    if services.versioning is not None:
        app.include_router(versioning_router(services.versioning, services.access, services.bus, caller))
    services.jupyter.mount(app)
    check_declared(app)
    return app

