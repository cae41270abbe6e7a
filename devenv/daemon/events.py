"""The event log (stored, for audit and `devenv events`) and the live bus (for streams to clients).

Every state change and every changing API call is recorded with its actor. Progress lines of a
build go to the bus only: they are many, and the stored phases already tell the story.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devenv.daemon.tables import Event

DAEMON_ACTOR = "devenvd"


@dataclass(frozen=True)
class LiveEvent:
    workspace: str | None
    kind: str  # api | state | progress | log | autostop | reconcile | settled | daemon
    message: str
    actor: str = DAEMON_ACTOR
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "workspace": self.workspace, "kind": self.kind,
                "actor": self.actor, "message": self.message, **({"data": self.data} if self.data else {})}


class Subscription:
    """Live events of one workspace (or all) from the moment it was made, until closed."""

    def __init__(self, bus: EventBus, workspace: str | None) -> None:
        self.bus = bus
        self.workspace = workspace
        self.inbox: queue.Queue[LiveEvent | None] = queue.Queue()  # None: the daemon is shutting down

    def close(self) -> None:
        self.bus._drop(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of live events to subscribers (thread-safe; each subscriber has its own queue)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self.closed = False

    def subscribe(self, workspace: str | None = None) -> Subscription:
        subscription = Subscription(self, workspace)
        with self._lock:
            self._subscribers.append(subscription)
            if self.closed:
                subscription.inbox.put(None)
        return subscription

    def close(self) -> None:
        """End every stream now (the daemon is stopping): a follower would otherwise hold the shutdown open."""
        with self._lock:
            self.closed = True
            inboxes = [subscription.inbox for subscription in self._subscribers]
        for inbox in inboxes:
            inbox.put(None)

    def _drop(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def publish(self, event: LiveEvent) -> None:
        with self._lock:
            targets = [s.inbox for s in self._subscribers if s.workspace is None or s.workspace == event.workspace]
        for inbox in targets:
            inbox.put(event)


class EventLog:
    """Records events in the store and publishes them on the bus."""

    def __init__(self, sessions: sessionmaker[Session], bus: EventBus) -> None:
        self.sessions = sessions
        self.bus = bus

    def record(self, workspace: str | None, kind: str, message: str, *, actor: str = DAEMON_ACTOR,
               data: dict[str, Any] | None = None) -> None:
        now = dt.datetime.now(dt.UTC)
        with self.sessions.begin() as session:
            row = Event(workspace=workspace, kind=kind, actor=actor, message=message, at=now)
            session.add(row)
            session.flush()
            event_id = row.id
        self.bus.publish(LiveEvent(workspace, kind, message, actor, data or {}, event_id, now.timestamp()))

    def live(self, workspace: str | None, kind: str, message: str, *, data: dict[str, Any] | None = None) -> None:
        """An event for whoever watches now; not stored (build output lines, settle notices)."""
        self.bus.publish(LiveEvent(workspace, kind, message, DAEMON_ACTOR, data or {}, None,
                                   dt.datetime.now(dt.UTC).timestamp()))

    def query(self, workspace: str | None = None, *, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        with self.sessions() as session:
            statement = select(Event).where(Event.id > after)
            if workspace is not None:
                statement = statement.where(Event.workspace == workspace)
            rows = session.scalars(statement.order_by(Event.id.desc()).limit(limit)).all()
        return [
            {"id": row.id, "at": row.at.replace(tzinfo=dt.UTC).timestamp() if row.at.tzinfo is None
             else row.at.timestamp(), "workspace": row.workspace, "kind": row.kind, "actor": row.actor,
             "message": row.message}
            for row in reversed(rows)
        ]
