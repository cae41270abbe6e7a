"""/v1 routes for a workspace's code, data and records: status, data pull, snapshots.

No `from __future__ import annotations`: the routes' types name the caller dependency handed in,
a local, which FastAPI could not resolve from a string (as in secret_routes).
"""

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from devenv.daemon.access import Access, Caller
from devenv.daemon.events import EventBus
from devenv.daemon.versioning import Versioning
from devenv.errors import DevenvError, error_payload

NDJSON = "application/x-ndjson"
HEARTBEAT_SECONDS = 10.0


class SnapshotRequest(BaseModel):
    note: str | None = Field(default=None, max_length=500, description="why: shown by `devenv snapshots`")


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def versioning_router(versioning: Versioning, access: Access, bus: EventBus,
                      caller: Callable[..., Caller]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.get("/workspaces/{name}/status", tags=["versioning"])
    def status(name: str, actor: actor_type) -> dict[str, Any]:  # type: ignore[valid-type]
        """Pins, secrets delivered or missing, the clone (branch, commit, dirty) and the data's last pull."""
        versioning.workspaces.get(name)
        access.require(actor, name, "ssh")  # the clone's state is as private as a shell in it
        return versioning.status(name)

    @router.post("/workspaces/{name}/data/pull", tags=["versioning"])
    def pull(name: str, actor: actor_type) -> StreamingResponse:  # type: ignore[valid-type]
        """Clone what is missing and pull the data again; streams progress lines, then the result."""
        access.require_owner(actor, name, "data pull")
        versioning.require_running(name)  # a clear error now, not in the stream
        subscription = bus.subscribe(name)
        outcome: queue.Queue[dict[str, Any]] = queue.Queue()

        def work() -> None:
            try:
                outcome.put({"setup": versioning.pull(actor.name, name)})
            except DevenvError as error:
                outcome.put({"error": error_payload(error)})

        threading.Thread(target=work, name=f"data-pull-{name}", daemon=True).start()

        def frames() -> Iterator[bytes]:
            quiet = 0.0
            try:
                while True:
                    try:
                        final = outcome.get_nowait()
                    except queue.Empty:
                        pass
                    else:  # the step's own events were published before its result: send them first
                        while True:
                            try:
                                event = subscription.inbox.get_nowait()
                            except queue.Empty:
                                break
                            if event is not None and event.kind in ("progress", "setup"):
                                yield _line({"event": event.to_json()})
                        yield _line(final)
                        return
                    try:
                        event = subscription.inbox.get(timeout=0.2)
                    except queue.Empty:
                        quiet += 0.2
                        if quiet >= HEARTBEAT_SECONDS:  # a long silent pull: keep the client patient
                            quiet = 0.0
                            yield b"\n"
                        continue
                    quiet = 0.0
                    if event is None:
                        return
                    if event.kind in ("progress", "setup"):
                        yield _line({"event": event.to_json()})
            finally:
                subscription.close()

        return StreamingResponse(frames(), media_type=NDJSON)

    @router.post("/workspaces/{name}/snapshots", tags=["versioning"])
    def snapshot(name: str, body: SnapshotRequest, actor: actor_type) -> dict[str, Any]:  # type: ignore[valid-type]
        access.require_owner(actor, name, "snapshot")
        return versioning.snapshot(actor.name, name, body.note)

    @router.get("/snapshots", tags=["versioning"])
    def snapshots(workspace: str | None = None) -> dict[str, Any]:
        """Every snapshot (the team's: a record holds hashes and URLs, no secret), newest first."""
        return {"items": versioning.snapshots(workspace)}

    @router.get("/snapshots/{snapshot_id}", tags=["versioning"])
    def get_snapshot(snapshot_id: str) -> dict[str, Any]:
        return versioning.get(snapshot_id)

    return router
