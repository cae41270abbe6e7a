"""/v1/code and /v1/workspaces/{name}/sync: the project folder's upload, and later edits pushed into a workspace.

Why a raw body: a project is up to DEVENV_MAX_CODE_BYTES of tar, streamed to a temporary file as it
arrives (never held in memory, never JSON), checked member by member, then kept under its hash
(devenv/code/store.py). A sync compares three manifests (what was placed, what the workspace holds now,
the new upload) inside the workspace and refuses to overwrite an edit made there unless forced.

No `from __future__ import annotations` here: the routes' types name the caller dependency handed to
`code_router`, a local, which FastAPI could not find if annotations were strings.
"""

import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StringConstraints

from devenv.backends.base import HOME_MOUNT, Handle
from devenv.code import deliver
from devenv.code.manifest import SyncFailed, conflict_error
from devenv.code.store import CodeStore
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.services.access import Caller
from devenv.daemon.services.code_step import record_placed
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.workspaces import WorkspaceService
from devenv.daemon.store import states
from devenv.errors import UsageError, WorkspaceBusy

HASH = r"^[0-9a-f]{64}$"
FOLDER = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_BATCH = 1 << 20  # bytes gathered before one write to disk (off the event loop)
Short = Annotated[str, StringConstraints(max_length=1000)]


class CodeRef(BaseModel):
    """Uploaded code named by `up`: placed in the home as FOLDER on the first start."""

    hash: str = Field(pattern=HASH, description="what PUT /v1/code answered")
    folder: str = Field(pattern=FOLDER, description="the folder's name in the home (the project folder's name)")
    source: dict[Short, Short | int | None] = Field(
        default_factory=dict, max_length=16, description="where it came from, for messages: path, git branch..."
    )


class SyncRequest(CodeRef):
    folder: str = Field(default="", pattern=r"^$|" + FOLDER[1:], description="ignored: the placed folder is used")
    force: bool = Field(default=False, description="overwrite files changed in the workspace too")
    dry_run: bool = Field(default=False, description="say what would change; change nothing")


def code_router(
    store: CodeStore, workspaces: WorkspaceService, events: EventLog, caller: Callable[..., Caller | Awaitable[Caller]]
) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["code"])
    actor_type = Annotated[Caller, Depends(caller)]
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    @router.put("/code", **allow(Rule.MEMBER))
    async def put_code(request: Request, actor: actor_type) -> dict[str, Any]:
        """A project folder as an uncompressed tar (the raw body); answers its hash, file count and size."""
        incoming = await anyio.to_thread.run_sync(store.begin)
        try:
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= _BATCH:
                    await anyio.to_thread.run_sync(incoming.write, bytes(pending))
                    pending.clear()
            if pending:
                await anyio.to_thread.run_sync(incoming.write, bytes(pending))
            answer = await anyio.to_thread.run_sync(store.commit, incoming, actor.name)
        except BaseException:
            incoming.discard()
            raise
        named = await anyio.to_thread.run_sync(referenced_code, workspaces)
        await anyio.to_thread.run_sync(lambda: store.prune(actor.name, named | {answer["hash"]}))
        return answer

    @router.post("/workspaces/{name}/sync", **allow(Rule.OWNER))
    def sync(name: str, body: SyncRequest, actor: actor_type) -> dict[str, Any]:
        """Push an uploaded folder's changes into the workspace's copy; 409 naming the files changed on both sides."""
        with guard:
            lock = locks.setdefault(name, threading.Lock())
        with lock:
            return sync_code(store, workspaces, events, actor, name, body)

    return router


def referenced_code(workspaces: WorkspaceService) -> set[str]:
    """Every upload a workspace record names (to place on a first start, or as what was placed last)."""
    named = set()
    for code in workspaces.records.code_records():
        named.add(str((code or {}).get("hash")))
        named.add(str(((code or {}).get("placed") or {}).get("hash")))
    return named


def sync_code(
    store: CodeStore, workspaces: WorkspaceService, events: EventLog, actor: Caller, name: str, body: SyncRequest
) -> dict[str, Any]:
    ws = workspaces.get(name)
    if not states.container_up(ws.state, ws.error_code):
        raise WorkspaceBusy(f"workspace {name} is {ws.state}, not running", hint=f"`devenv start {name}` first")
    store.require(body.hash, actor.name, admin=actor.admin)
    code = dict(ws.code or {})
    placed = dict(code.get("placed") or {})
    folder = placed.get("folder") or code.get("folder")
    if not folder:
        raise UsageError(
            f"workspace {name} holds no uploaded project folder",
            hint="its code comes from `repo:` (use git inside), or it has not started yet",
        )
    base: dict[str, str] = dict(placed.get("manifest") or {})
    new = store.manifest(body.hash).entries
    changed = sorted(path for path in set(base) | set(new) if base.get(path) != new.get(path))
    result: dict[str, Any] = {"write": [], "delete": [], "conflicts": []}
    if changed:
        job = {
            "mode": "sync",
            "folder": folder,
            "force": body.force,
            "dry_run": body.dry_run,
            "base": {path: base[path] for path in changed if path in base},
            "new": {path: new[path] for path in changed if path in new},
        }
        every = len(job["new"]) == len(new)  # every file changed: the upload itself is what to send
        part = None if body.dry_run or every else deliver.subset(store.tar(body.hash), list(job["new"]), store.root)
        try:
            sent = store.tar(body.hash) if every and not body.dry_run else part
            result = deliver.run(
                workspaces.backends.get(ws.backend), Handle.for_workspace(name), sent, job, lambda _line: None
            )
        finally:
            if part is not None:
                part.unlink(missing_ok=True)
        if result.get("status") == "missing":
            raise UsageError(
                f"{HOME_MOUNT}/{folder} is not in workspace {name} any more",
                hint=f"put it back inside, or `devenv rm {name}` and `devenv up` to place it afresh",
            )
        if result.get("status") not in ("planned", "synced"):
            raise SyncFailed(
                f"sync into {name} failed: {str(result.get('message', ''))[:500]}",
                hint="nothing was overwritten that the workspace changed; fix what it names and retry",
            )
    conflicts = [list(item) for item in result.get("conflicts") or []]
    if conflicts and not body.dry_run:
        raise conflict_error(name, conflicts)
    write, delete = list(result.get("write") or []), list(result.get("delete") or [])
    answer = {
        "folder": f"{HOME_MOUNT}/{folder}",
        "hash": body.hash,
        "dry_run": body.dry_run,
        "write": write,
        "delete": delete,
        "conflicts": conflicts,
        "files": len(new),
    }
    if not body.dry_run:
        record_placed(workspaces.sessions, name, body.hash, folder, new, source=body.source or None)
        events.record(
            name,
            "code",
            f"sync: {len(write)} written, {len(delete)} deleted" + (" (--force)" if body.force else ""),
            actor=actor.name,
        )
    return answer
