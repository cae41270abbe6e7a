"""/v1 routes for a workspace's code, data and records: status, data pull, snapshots.

No `from __future__ import annotations`: the routes' types name the caller dependency handed in,
a local, which FastAPI could not resolve from a string (as in api/secrets.py).
"""

import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from devenv import wire
from devenv.daemon.api.authz import Rule, Visibility, allow
from devenv.daemon.api.streams import NDJSON, deliver, step_stream
from devenv.daemon.services.access import Access, Caller
from devenv.daemon.services.events import EventBus
from devenv.daemon.services.versioning import Versioning
from devenv.errors import DevenvError, error_payload

PULL_EVENTS = frozenset({"progress", "setup"})


class SnapshotRequest(BaseModel):
    note: str | None = Field(default=None, max_length=500, description="why: shown by `devenv snapshots`")


def versioning_router(
    versioning: Versioning, access: Access, bus: EventBus, caller: Callable[..., Caller | Awaitable[Caller]]
) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    actor_type = Annotated[Caller, Depends(caller)]
    visibility = Visibility(versioning.sessions)

    @router.get(
        "/workspaces/{name}/status", tags=["versioning"], response_model=wire.WorkspaceStatus, **allow(Rule.SSH)
    )
    def status(name: str, actor: actor_type) -> dict[str, Any]:
        """Pins, secrets delivered or missing, the clone (branch, commit, dirty) and the data's last pull."""
        versioning.workspaces.get(name)
        access.require(actor, name, "ssh")  # the clone's state is as private as a shell in it
        return versioning.status(name)

    @router.post("/workspaces/{name}/data/pull", tags=["versioning"], **allow(Rule.OWNER))
    def pull(name: str, actor: actor_type) -> StreamingResponse:
        """Clone what is missing and pull the data again; streams progress lines, then the result."""
        access.require_owner(actor, name, "data pull")
        versioning.require_running(name)  # a clear error now, not in the stream
        subscription = bus.subscribe_async(name)  # before the work starts: none of its events is missed

        def work() -> None:
            try:
                deliver(subscription, name, {"setup": versioning.pull(actor.name, name)})
            except DevenvError as error:
                deliver(subscription, name, {"error": error_payload(error)})

        threading.Thread(target=work, name=f"data-pull-{name}", daemon=True).start()
        return StreamingResponse(step_stream(subscription, PULL_EVENTS), media_type=NDJSON)

    @router.post(
        "/workspaces/{name}/snapshots", tags=["versioning"], response_model=wire.SnapshotView, **allow(Rule.OWNER)
    )
    def snapshot(name: str, body: SnapshotRequest, actor: actor_type) -> dict[str, Any]:
        access.require_owner(actor, name, "snapshot")
        return versioning.snapshot(actor.name, name, body.note)

    @router.get("/snapshots", tags=["versioning"], response_model=wire.SnapshotList, **allow(Rule.MEMBER))
    def snapshots(actor: actor_type, workspace: str | None = None) -> dict[str, Any]:
        """The snapshots the caller may see (of workspaces they own or are granted, or that they made), newest first."""
        items = versioning.snapshots(workspace)
        if actor.admin:
            return {"items": items}
        names = visibility.workspaces(actor.name)
        return {
            "items": [
                item
                for item in items
                if item.get("workspace") in names or actor.name in (item.get("owner"), item.get("made_by"))
            ]
        }

    @router.get(
        "/snapshots/{snapshot_id}", tags=["versioning"], response_model=wire.SnapshotView, **allow(Rule.SNAPSHOT)
    )
    def get_snapshot(snapshot_id: str) -> dict[str, Any]:
        return versioning.get(snapshot_id)

    return router
