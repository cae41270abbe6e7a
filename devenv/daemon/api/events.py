"""/v1/events: what happened to the workspaces the caller may see, stored, and followed as it happens.

No `from __future__ import annotations` here: the routes' types name the caller dependency handed to
`event_router`, a local, which FastAPI could not find if annotations were strings.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from devenv import wire
from devenv.daemon.api.authz import TEAM_EVENT_KINDS, Rule, Visibility, allow, event_visible
from devenv.daemon.api.streams import NDJSON, Shared
from devenv.daemon.api.streams import follow_events as follow_stream
from devenv.daemon.services.access import Caller
from devenv.daemon.services.events import EventBus, EventLog, LiveEvent

MAX_ID = 2**63 - 1  # the store's integer ids: a larger `after` is a client's mistake, not a 500


def event_router(
    log: EventLog, bus: EventBus, visibility: Visibility, caller: Callable[..., Caller | Awaitable[Caller]]
) -> APIRouter:
    """The event routes, behind the same caller check (`caller`) as the rest of /v1."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["events"])
    actor_type = Annotated[Caller, Depends(caller)]
    views: Shared[str, set[str]] = Shared(visibility.workspaces)  # person -> theirs; read once a second

    @router.get("/events", response_model=wire.EventList, **allow(Rule.MEMBER))
    def events(
        actor: actor_type,
        workspace: str | None = None,
        after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 200,
    ) -> dict[str, Any]:
        """Events of the workspaces the caller may see (an admin: all, the daemon's own too)."""
        names = visibility.visible(actor)
        return {
            "items": log.query(
                workspace, after=after, limit=limit, workspaces=names, owner=actor.name, team_kinds=TEAM_EVENT_KINDS
            )
        }

    @router.get("/events/follow", **allow(Rule.MEMBER))
    def follow_events(actor: actor_type, workspace: str | None = None) -> StreamingResponse:
        """Stored events as they happen; no worker thread is held while the stream waits."""
        if actor.admin:
            return StreamingResponse(follow_stream(bus, workspace), media_type=NDJSON)

        def shown(event: LiveEvent) -> bool:  # on the event loop, for every event: from memory only
            return event_visible(
                actor.name, views.peek(actor.name), event.workspace, event.owner, event.kind, event.actor
            )

        return StreamingResponse(follow_stream(bus, workspace, shown, lambda: views.get(actor.name)), media_type=NDJSON)

    return router
