"""The event log (stored, for audit and `devenv events`) and the live bus (for streams to clients).

Every state change and every changing API call is recorded with its actor. Progress lines of a
build go to the bus only: they are many, and the stored phases already tell the story.

A subscriber is a thread (`subscribe`: a queue.Queue it blocks on) or a coroutine (`subscribe_async`:
no thread held while it waits, so a thousand open follow streams cost no worker threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import queue
import threading
import weakref
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session, sessionmaker

from devenv.daemon.store.tables import Event
from devenv.daemon.store.workspaces import WorkspaceRecords

DAEMON_ACTOR = "devenvd"
MAX_BACKLOG = 1000  # events waiting for one coroutine reader; past this its stream is ended (Ended.LAGGED)


@dataclass(frozen=True)
class LiveEvent:
    workspace: str | None
    kind: str  # api | state | progress | log | autostop | reconcile | settled | daemon
    message: str
    actor: str = DAEMON_ACTOR
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    at: float = 0.0
    owner: str | None = None  # the workspace's owner when it happened: members see their own workspaces' events

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "workspace": self.workspace,
            "kind": self.kind,
            "actor": self.actor,
            "message": self.message,
            **({"data": self.data} if self.data else {}),
        }


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


class Ended(StrEnum):
    CLOSED = "closed"  # the daemon is stopping, or the subscription was closed
    LAGGED = "lagged"  # the reader fell MAX_BACKLOG events behind: ended rather than let memory grow


class StreamEnded(Exception):
    def __init__(self, reason: Ended) -> None:
        super().__init__(reason.value)
        self.reason = reason


class AsyncSubscription:
    """Live events for a coroutine: filled from any thread, read on an event loop without holding a thread.

    Made from any thread (a sync route subscribes before it acts); bound to the loop of its first read.
    The bus holds it weakly: a stream whose generator never ran is dropped with it, not left subscribed.
    """

    def __init__(self, bus: EventBus, workspace: str | None, backlog: int) -> None:
        self.bus = bus
        self.workspace = workspace
        self.backlog = backlog
        self.ended: Ended | None = None
        self._events: deque[LiveEvent] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the next heartbeat: armed once, not for every event
        self._ticked = False
        self._signalled = False  # a wake is scheduled on the loop already: one per burst, not per event

    def only(self, workspace: str) -> None:
        """From now on, events of this workspace only (known once the work was accepted)."""
        with self.bus._lock:
            self.workspace = workspace

    def put(self, event: LiveEvent) -> None:
        """Deliver to this subscriber alone, after what it has queued (a step's result after its events)."""
        with self.bus._lock:
            loop = self._offer(event)
        if loop is not None:
            _wake_on(loop, [self])

    def close(self) -> None:
        with self.bus._lock:
            self.ended = self.ended or Ended.CLOSED
            self.bus._async.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def next_batch(self, timeout: float) -> list[LiveEvent]:
        """Every event queued so far, oldest first; [] when a heartbeat is due (`timeout` seconds after
        the previous one). Raises StreamEnded once the queue is empty and the subscription has ended."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            with self.bus._lock:
                self._loop = loop
        while True:
            with self.bus._lock:
                if self._events:
                    batch = list(self._events)
                    self._events.clear()
                    return batch
                if self.ended is not None:
                    raise StreamEnded(self.ended)
            if self._ticked:
                self._ticked = False
                return []
            if self._timer is None:
                self._timer = loop.call_later(timeout, self._tick)
            # nothing runs on this loop between the look above and this wait: a wake comes after it
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _offer(self, event: LiveEvent) -> asyncio.AbstractEventLoop | None:
        """Queue `event` (under the bus lock); the loop to wake, if one is bound and not woken yet."""
        if self.ended is not None:
            return None
        if len(self._events) >= self.backlog:
            self.ended = Ended.LAGGED
            self.bus._async.discard(self)
        else:
            self._events.append(event)
        return self._wakeable()

    def _wakeable(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is None or self._signalled:
            return None
        self._signalled = True
        return self._loop

    def _tick(self) -> None:  # on its loop
        self._timer, self._ticked = None, True
        self._resume()

    def _resume(self) -> None:  # on its loop
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _wake_on(loop: asyncio.AbstractEventLoop, subscriptions: list[AsyncSubscription]) -> None:
    """Resume these readers on their loop: one callback for all of them, however many."""

    def wake() -> None:
        with subscriptions[0].bus._lock:
            for subscription in subscriptions:
                subscription._signalled = False
        for subscription in subscriptions:
            subscription._resume()

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads these any more
        loop.call_soon_threadsafe(wake)


class EventBus:
    """Fan-out of live events to subscribers (thread-safe; each subscriber has its own queue)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._async: weakref.WeakSet[AsyncSubscription] = weakref.WeakSet()
        self.closed = False

    def subscribe(self, workspace: str | None = None) -> Subscription:
        subscription = Subscription(self, workspace)
        with self._lock:
            self._subscribers.append(subscription)
            if self.closed:
                subscription.inbox.put(None)
        return subscription

    def subscribe_async(self, workspace: str | None = None, *, backlog: int = MAX_BACKLOG) -> AsyncSubscription:
        """A subscription read with `await next_batch(...)`; callable from any thread."""
        subscription = AsyncSubscription(self, workspace, backlog)
        with self._lock:
            if self.closed:
                subscription.ended = Ended.CLOSED
            else:
                self._async.add(subscription)
        return subscription

    def close(self) -> None:
        """End every stream now (the daemon is stopping): a follower would otherwise hold the shutdown open."""
        wakes: dict[asyncio.AbstractEventLoop, list[AsyncSubscription]] = {}
        with self._lock:
            self.closed = True
            inboxes = [subscription.inbox for subscription in self._subscribers]
            for waiting in list(self._async):
                waiting.ended = Ended.CLOSED
                if (loop := waiting._wakeable()) is not None:
                    wakes.setdefault(loop, []).append(waiting)
            self._async.clear()
        for inbox in inboxes:
            inbox.put(None)
        for loop, subscriptions in wakes.items():
            _wake_on(loop, subscriptions)

    def _drop(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def publish(self, event: LiveEvent) -> None:
        wakes: dict[asyncio.AbstractEventLoop, list[AsyncSubscription]] = {}
        with self._lock:
            targets = [s.inbox for s in self._subscribers if s.workspace is None or s.workspace == event.workspace]
            for waiting in list(self._async):
                wanted = waiting.workspace is None or waiting.workspace == event.workspace
                if wanted and (loop := waiting._offer(event)) is not None:
                    wakes.setdefault(loop, []).append(waiting)
        for inbox in targets:
            inbox.put(event)
        for loop, subscriptions in wakes.items():  # one wake per loop per event, however many streams
            _wake_on(loop, subscriptions)


def _owner(records: WorkspaceRecords, session: Session, workspace: str | None) -> str | None:
    """The workspace's owner; once its record is gone (deleted, rolled back), the owner its last event named."""
    if workspace is None:
        return None
    owner = records.owner_of(workspace, session=session)
    if owner is None:
        owner = session.scalar(
            select(Event.owner).where(Event.workspace == workspace).order_by(Event.id.desc()).limit(1)
        )
    return owner


class EventLog:
    """Records events in the store and publishes them on the bus."""

    def __init__(self, sessions: sessionmaker[Session], bus: EventBus) -> None:
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.bus = bus

    def record(
        self,
        workspace: str | None,
        kind: str,
        message: str,
        *,
        actor: str = DAEMON_ACTOR,
        data: dict[str, Any] | None = None,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        with self.sessions.begin() as session:
            owner = _owner(self.records, session, workspace)
            row = Event(workspace=workspace, kind=kind, actor=actor, message=message, at=now, owner=owner)
            session.add(row)
            session.flush()
            event_id = row.id
        self.bus.publish(LiveEvent(workspace, kind, message, actor, data or {}, event_id, now.timestamp(), owner))

    def live(self, workspace: str | None, kind: str, message: str, *, data: dict[str, Any] | None = None) -> None:
        """An event for whoever watches now; not stored (build output lines, settle notices)."""
        self.bus.publish(
            LiveEvent(workspace, kind, message, DAEMON_ACTOR, data or {}, None, dt.datetime.now(dt.UTC).timestamp())
        )

    def query(
        self,
        workspace: str | None = None,
        *,
        after: int = 0,
        limit: int = 200,
        workspaces: Collection[str] | None = None,
        owner: str | None = None,
        team_kinds: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """The newest events after `after`. When `workspaces` is given, only what a member (`owner`) may
        see: events of these workspaces, of workspaces they owned when it happened, events they made
        themselves, and the daemon's own of `team_kinds`."""
        with self.sessions() as session:
            statement = select(Event).where(Event.id > after)
            if workspace is not None:
                statement = statement.where(Event.workspace == workspace)
            if workspaces is not None:
                mine = (
                    (Event.owner == owner) | ((Event.actor == owner) & Event.workspace.is_(None))
                    if owner is not None
                    else false()
                )
                team = Event.workspace.is_(None) & Event.kind.in_(sorted(team_kinds))
                statement = statement.where(or_(Event.workspace.in_(sorted(workspaces)), mine, team))
            rows = session.scalars(statement.order_by(Event.id.desc()).limit(limit)).all()
        return [
            {
                "id": row.id,
                "at": row.at.replace(tzinfo=dt.UTC).timestamp() if row.at.tzinfo is None else row.at.timestamp(),
                "workspace": row.workspace,
                "kind": row.kind,
                "actor": row.actor,
                "message": row.message,
            }
            for row in reversed(rows)
        ]
