"""/v1/workspaces: list, look at, change (up, stop, start, rebuild, remove), run in, read the logs of,
and give access to a workspace; and `up` from a snapshot.

Changing routes answer a stream of newline-delimited JSON: live events while the work goes on, then
one final line with the workspace (or the error). A client that goes away does not cancel the work;
`devenv up` again re-attaches.

No `from __future__ import annotations` here: the routes' types name the caller dependency handed to
`workspace_router`, a local, which FastAPI could not find if annotations were strings.
"""

import base64
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from devenv import wire
from devenv.backends.base import ExecStream
from devenv.code.store import CodeStore
from devenv.daemon.api.authz import Rule, Visibility, allow, require
from devenv.daemon.api.code import CodeRef
from devenv.daemon.api.jupyter_proxy import JupyterGateway
from devenv.daemon.api.streams import NDJSON, line, settle_stream
from devenv.daemon.services.access import Access, Caller, parse_ttl
from devenv.daemon.services.events import EventBus
from devenv.daemon.services.projects import Upload, check_upload
from devenv.daemon.services.versioning import Versioning
from devenv.daemon.services.workspaces import Accepted, WorkspaceService, workspace_json
from devenv.daemon.store.db import SharedReads
from devenv.errors import DevenvError, SpecInvalid, SpecIssue, UsageError, error_payload
from devenv.spec.models import name_hint, valid_name

WORKSPACE_USER = "dev"
MAX_TTL_SECONDS = 366 * 86400  # a grant that should outlive a year is a standing one: no --ttl

CallerDependency = Callable[..., Caller | Awaitable[Caller]]


class ProjectUpload(BaseModel):
    spec_path: str = Field(description="the spec as the person named it, for messages")
    files: dict[str, str] = Field(description="devenv.yaml, devenv.lock, requirement files: path -> text")


class UpRequest(ProjectUpload):
    name: str | None = Field(default=None, description="workspace name (default: the spec's name)")
    on: str | None = Field(
        default=None, description='the backend (host) to run on, or "auto" to place it; default: the spec\'s `backend:`'
    )
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
    share_secrets: bool = Field(
        default=False,
        description="also place the owner's own secrets while the workspace is shared (default: team secrets only)",
    )
    ttl: str | None = Field(default=None, max_length=32, description="ends by itself after this long: 90s, 30m, 4h, 2d")


class ExecRequest(BaseModel):
    argv: list[str]
    user: str = "dev"
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None


def _ttl(text: str) -> float:
    seconds = parse_ttl(text)
    if not math.isfinite(seconds) or seconds > MAX_TTL_SECONDS:
        raise UsageError(
            f"--ttl {text!r}: at most {MAX_TTL_SECONDS // 86400} days",
            hint="leave --ttl out for a grant that lasts until it is revoked",
        )
    return seconds


def _check_name(name: str | None, where: str = "the request") -> None:
    """A workspace name from a request, checked before anything looks it up (a lone surrogate, a newline);
    told as the spec's own `name:` would be, so forms show it at their name field."""
    if name is not None and not valid_name(name):
        raise SpecInvalid([SpecIssue(where, None, None, "name", f"{name[:80]!r} is not a valid name", name_hint(name))])


def _upload(body: ProjectUpload) -> Upload:
    return check_upload(body.spec_path, body.files)


def _over_tcp(request: Request) -> bool:
    server = request.scope.get("server")
    return server is not None and server[1] is not None


def _follow(bus: EventBus, ws: WorkspaceService, do: Callable[[], Accepted]) -> StreamingResponse:
    """Subscribe first, then act, then stream until the workspace settles at the new generation."""
    subscription = bus.subscribe_async(None)
    try:
        accepted = do()
    except BaseException:
        subscription.close()
        raise
    return StreamingResponse(settle_stream(accepted, subscription, ws), media_type=NDJSON)


def _exec_frames(stream: ExecStream) -> Iterator[bytes]:
    """A command's output as NDJSON lines (base64 chunks by stream), then its exit status or the error."""
    try:
        for which, chunk in stream:
            yield line({which: base64.b64encode(chunk).decode()})
        yield line({"exit": stream.exit_code})
    except DevenvError as error:
        yield line({"error": error_payload(error)})


def workspace_router(
    ws: WorkspaceService,
    access: Access,
    jupyter: JupyterGateway,
    bus: EventBus,
    visibility: Visibility,
    reads: SharedReads,
    code_store: CodeStore,
    caller: CallerDependency,
) -> APIRouter:
    """The workspace routes, behind the same caller check (`caller`) as the rest of /v1."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.get(
        "/workspaces",
        tags=["workspaces"],
        response_class=JSONResponse,
        response_model=wire.WorkspacePage,
        **allow(Rule.MEMBER),
    )  # encoded by page_json: the model documents it (tests/unit/test_wire_models.py)
    async def list_workspaces(
        actor: actor_type,
        owner: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: str | None = None,
    ) -> Response:
        """The workspaces the caller may see: their own and those granted to them (an admin: every one).
        One read of the store on a worker thread, shared by the same request's callers (daemon/store/db.py)."""
        person = None if actor.admin else actor.name  # every admin sees the same

        def page() -> bytes:
            return ws.page_json(owner=owner, limit=limit, after=after, visible=visibility.visible_clause(actor))

        return Response(
            await reads.read(("workspaces", person, owner, limit, after), page), media_type="application/json"
        )

    @router.get("/workspaces/{name}", tags=["workspaces"], response_model=wire.WorkspaceView, **allow(Rule.VIEWER))
    def get_workspace(name: str) -> dict[str, Any]:
        row = ws.get(name)
        return workspace_json(row, price=ws.price(row))

    @router.get(
        "/workspaces/{name}/project", tags=["workspaces"], response_model=wire.ProjectSummary, **allow(Rule.VIEWER)
    )
    def get_project(name: str) -> dict[str, Any]:
        return ws.project_summary(name)

    @router.get("/workspaces/{name}/lock", tags=["workspaces"], response_model=wire.LockText, **allow(Rule.VIEWER))
    def get_lock(name: str) -> dict[str, str | None]:
        return {"lock": ws.lock_text(name)}

    @router.post("/workspaces", tags=["workspaces"], **allow(Rule.MEMBER))
    def up(body: UpRequest, actor: actor_type) -> StreamingResponse:
        _check_name(body.name, body.spec_path)
        upload = _upload(body)
        if body.name:
            access.require_owner(actor, body.name, "up")
        if body.code is not None:
            code_store.require(body.code.hash, actor.name, admin=actor.admin)
        code = body.code.model_dump() if body.code is not None else None
        return _follow(bus, ws, lambda: _up_owned(actor, upload, body.name, body.on, code))

    def _up_owned(
        actor: Caller, upload: Upload, name: str | None, on: str | None, code: dict[str, Any] | None
    ) -> Accepted:
        if name is None:  # the spec's name: known once the spec is read
            access.require_owner(actor, ws.projects.open(upload).spec.name, "up")
        return ws.up(actor.name, upload, name, on=on, code=code)

    @router.post("/workspaces/{name}/stop", tags=["workspaces"], **allow(Rule.OWNER))
    def stop(name: str, actor: actor_type) -> StreamingResponse:
        return _follow(bus, ws, lambda: ws.stop(actor.name, name))

    @router.post("/workspaces/{name}/start", tags=["workspaces"], **allow(Rule.VIEWER))
    def start(name: str, actor: actor_type) -> StreamingResponse:
        """Its owner's, and anyone's it is granted to: a teammate may wake a workspace that stopped while idle."""
        return _follow(bus, ws, lambda: ws.start(actor.name, name))

    @router.post("/workspaces/{name}/rebuild", tags=["workspaces"], **allow(Rule.OWNER))
    def rebuild(name: str, body: RebuildRequest, actor: actor_type) -> StreamingResponse:
        upload = _upload(body.project) if body.project else None
        return _follow(bus, ws, lambda: ws.rebuild(actor.name, name, upload))

    @router.delete("/workspaces/{name}", tags=["workspaces"], **allow(Rule.OWNER))
    def remove(name: str, actor: actor_type, keep_volume: bool = False) -> StreamingResponse:
        return _follow(bus, ws, lambda: ws.remove(actor.name, name, keep_volume=keep_volume))

    @router.post(
        "/workspaces/{name}/ssh/certificate", tags=["access"], response_model=wire.SshCertificate, **allow(Rule.SSH)
    )
    def ssh_certificate(name: str, body: CertificateRequest, actor: actor_type) -> dict[str, Any]:
        return access.certificate(actor, name, body.public_key)

    @router.get("/workspaces/{name}/access", tags=["access"], response_model=wire.AccessList, **allow(Rule.VIEWER))
    def list_access(name: str, actor: actor_type, ended: bool = False) -> dict[str, Any]:
        return access.list(actor, name, ended=ended)

    @router.post("/workspaces/{name}/access", tags=["access"], response_model=wire.GrantView, **allow(Rule.OWNER))
    def grant_access(name: str, body: GrantRequest, actor: actor_type) -> dict[str, Any]:
        ttl = _ttl(body.ttl) if body.ttl else None
        return access.grant(
            actor, name, body.person, ssh=body.ssh, jupyter=body.jupyter, ttl=ttl, share_secrets=body.share_secrets
        )

    @router.delete(
        "/workspaces/{name}/access/{person}", tags=["access"], response_model=wire.GrantView, **allow(Rule.OWNER)
    )
    def revoke_access(name: str, person: str, actor: actor_type) -> dict[str, Any]:
        return access.revoke(actor, name, person)

    @router.post(
        "/workspaces/{name}/jupyter/login", tags=["access"], response_model=wire.JupyterLink, **allow(Rule.JUPYTER)
    )
    def jupyter_login(name: str, request: Request, actor: actor_type) -> dict[str, Any]:
        base = str(request.base_url) if _over_tcp(request) else None
        return jupyter.login_link(actor, name, base)

    @router.post("/workspaces/{name}/exec", tags=["workspaces"], **allow(Rule.SSH))
    def exec_command(name: str, body: ExecRequest, actor: actor_type) -> StreamingResponse:
        """A command inside is as much as a shell (SSH access); as another user than `dev`, the owner's only."""
        if body.user != WORKSPACE_USER:
            require(visibility, actor, Rule.OWNER, {"name": name})
        stream = ws.exec(actor.name, name, body.argv, user=body.user, env=body.env, workdir=body.workdir)
        return StreamingResponse(_exec_frames(stream), media_type=NDJSON)

    @router.get("/workspaces/{name}/logs", tags=["workspaces"], **allow(Rule.SSH))
    def logs(
        name: str, follow: bool = False, tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None
    ) -> StreamingResponse:
        """A workspace's output is as private as its shell."""
        chunks = ws.logs(name, follow=follow, tail=tail)
        return StreamingResponse(chunks, media_type="application/octet-stream")

    return router


def snapshot_up_router(
    versioning: Versioning | None, ws: WorkspaceService, access: Access, bus: EventBus, caller: CallerDependency
) -> APIRouter:
    """POST /v1/snapshots/{snapshot_id}/up: a new workspace, streamed like `up` (the other snapshot routes
    are in api/versioning.py)."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.post("/snapshots/{snapshot_id}/up", tags=["versioning"], **allow(Rule.SNAPSHOT))
    def up_from_snapshot(snapshot_id: str, body: SnapshotUpRequest, actor: actor_type) -> StreamingResponse:
        """A workspace at exactly a snapshot's versions (owned by the caller), streamed like `up`.

        The name (given, or the snapshot's default) must be free or the caller's: never a way to restart
        or take over another person's workspace."""
        assert versioning is not None
        _check_name(body.name)
        name = body.name or versioning.default_name(snapshot_id)
        access.require_owner(actor, name, "up")
        return _follow(bus, ws, lambda: versioning.up(actor.name, snapshot_id, name))

    return router
