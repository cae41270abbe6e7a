"""The API's long streams as coroutines: a follower waits on the event loop, not on a worker thread.

Each open `devenv events --follow`, TUI or `devenv up` used to block one of the daemon's worker
threads on a queue; a few hundred of them starved every other request. These generators hold no
thread while they wait; a blocking store read is done in a worker thread, briefly. A reader that
falls MAX_BACKLOG events behind is ended, not buffered without end (see events.AsyncSubscription):
a follow stream just ends (the TUI follows again), a settle stream ends with an error line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio.to_thread

from devenv.daemon.services.events import AsyncSubscription, Ended, EventBus, LiveEvent, StreamEnded
from devenv.daemon.services.workspaces import Accepted, WorkspaceService, workspace_json

K = TypeVar("K")
V = TypeVar("V")
HEARTBEAT_SECONDS = 10.0
REFRESH_SECONDS = 1.0  # how stale a follow stream's view of what its caller may see can be
NDJSON = "application/x-ndjson"  # the media type of every stream of lines the API answers
HEARTBEAT = b"\n"  # keeps proxies patient; lets a vanished client be noticed
LAGGED_CODE = "stream_lagged"


def line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def lagged_error() -> dict[str, Any]:
    """The error line of a stream whose client read too slowly (the work itself goes on)."""
    return {
        "code": LAGGED_CODE,
        "message": "this stream fell too far behind its events and was ended "
        "(the client read too slowly); the work goes on",
        "hint": "`devenv ls` shows where it stands; `devenv events WORKSPACE` tells what happened",
    }


async def follow_events(
    bus: EventBus,
    workspace: str | None,
    visible: Callable[[LiveEvent], bool] | None = None,
    refresh: Callable[[], Awaitable[object]] | None = None,
) -> AsyncIterator[bytes]:
    """Stored events (what `devenv events` shows) as NDJSON lines, as they happen, with heartbeats.

    `visible` says what the caller may see (None: everything, an admin). It is called on the event loop
    for every event of every open stream, so it answers from memory; `refresh` is awaited first, when
    stored events came, to bring that memory up to date (see `Shared`: one store read a second per
    person, whatever the number of their streams). A quiet stream reads nothing.
    Ends when the daemon stops, or when the reader falls too far behind (the client follows again).
    """
    subscription = bus.subscribe_async(workspace)
    try:
        while True:
            try:
                batch = await subscription.next_batch(HEARTBEAT_SECONDS)
            except StreamEnded:
                return
            if not batch:
                yield HEARTBEAT
                continue
            stored = [event for event in batch if event.id is not None]
            if stored and visible is not None:
                if refresh is not None:
                    await refresh()
                stored = [event for event in stored if visible(event)]
            if stored:
                yield b"".join(_encoded(event) for event in stored)
    finally:
        subscription.close()


_ENCODED: dict[int, tuple[LiveEvent, bytes]] = {}  # a stored event's line, encoded once for all its streams
_ENCODED_KEPT = 256


def _encoded(event: LiveEvent) -> bytes:
    assert event.id is not None
    held = _ENCODED.get(event.id)
    if held is not None and held[0] is event:
        return held[1]
    if len(_ENCODED) >= _ENCODED_KEPT:
        _ENCODED.clear()
    encoded = line(event.to_json())
    _ENCODED[event.id] = (event, encoded)
    return encoded


class Shared(Generic[K, V]):
    """Values read from the store in a worker thread, shared by every stream that asks for the same key,
    read again at most once every `every` seconds. Used on one event loop (the daemon's)."""

    def __init__(self, read: Callable[[K], V], every: float = REFRESH_SECONDS) -> None:
        self.read, self.every = read, every
        self._values: dict[K, tuple[float, V]] = {}
        self._reading: dict[K, asyncio.Future[V]] = {}

    def peek(self, key: K) -> V | None:
        """The last value read (None before the first read): what a predicate on the loop answers from."""
        held = self._values.get(key)
        return held[1] if held else None

    async def get(self, key: K) -> V:
        held = self._values.get(key)
        if held is not None and time.monotonic() - held[0] < self.every:
            return held[1]
        reading = self._reading.get(key)
        if reading is None:  # else another stream is reading it now: wait for the same answer
            reading = self._reading[key] = asyncio.ensure_future(self._read(key))
            reading.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(reading)  # a stream that goes away does not cancel the others' read

    async def _read(self, key: K) -> V:
        try:
            value = await anyio.to_thread.run_sync(self.read, key)
        finally:
            del self._reading[key]
        self._values[key] = (time.monotonic(), value)
        return value


async def settle_stream(
    accepted: Accepted, subscription: AsyncSubscription, ws: WorkspaceService
) -> AsyncIterator[bytes]:
    """The work's live events while it goes on, then one final line: the workspace, {"deleted"} or {"error"}.

    `subscription` was made (bus.subscribe_async(None)) before the work was started, so no event of
    it is missed; it is closed here, whatever ends the stream.
    """
    try:
        if not accepted.scheduled:
            yield await anyio.to_thread.run_sync(_workspace_line, ws, accepted.name, False)
            return
        subscription.only(accepted.name)
        async for batch in _batches(subscription):  # ends when the daemon stops: the client says cut short
            if isinstance(batch, bytes):
                yield batch
                continue
            lines: list[bytes] = []
            for event in batch:
                if event.workspace != accepted.name:
                    continue
                if event.kind != "settled":
                    lines.append(line({"event": event.to_json()}))
                    continue
                if event.data.get("generation", 0) < accepted.generation:
                    continue
                if "error" in event.data:
                    lines.append(line({"error": event.data["error"]}))
                elif event.data.get("state") == "deleted":
                    lines.append(line({"deleted": accepted.name}))
                else:
                    lines.append(await anyio.to_thread.run_sync(_workspace_line, ws, accepted.name, True))
                yield b"".join(lines)
                return
            if lines:
                yield b"".join(lines)
    finally:
        subscription.close()


async def _batches(subscription: AsyncSubscription) -> AsyncIterator[list[LiveEvent] | bytes]:
    """A work stream's events in batches, a heartbeat line while it is quiet, and at the end an error
    line when its reader fell too far behind (ended by the daemon stopping: nothing more)."""
    while True:
        try:
            batch = await subscription.next_batch(HEARTBEAT_SECONDS)
        except StreamEnded as ended:
            if ended.reason is Ended.LAGGED:
                yield line({"error": lagged_error()})
            return
        yield batch if batch else HEARTBEAT


def _workspace_line(ws: WorkspaceService, name: str, settled: bool) -> bytes:
    """The workspace's record as the final line (store reads: run in a worker thread)."""
    if not settled:
        row = ws.get(name)
        return line({"workspace": workspace_json(row, price=ws.price(row))})
    current = ws.converger.load(name)
    return line({"workspace": workspace_json(current, price=ws.price(current))} if current else {"deleted": name})


RESULT_KIND = "result"  # a step's own outcome, put to one subscription (never published on the bus)


def deliver(subscription: AsyncSubscription, workspace: str, payload: dict[str, Any]) -> None:
    """Hand a step's final line to its stream, from the step's thread: it follows the step's events."""
    subscription.put(LiveEvent(workspace, RESULT_KIND, "", data=payload))


async def step_stream(subscription: AsyncSubscription, kinds: frozenset[str]) -> AsyncIterator[bytes]:
    """A step's events of `kinds` as {"event": ...} lines, then the final line `deliver` handed over."""
    try:
        async for batch in _batches(subscription):
            if isinstance(batch, bytes):
                yield batch
                continue
            lines: list[bytes] = []
            for event in batch:
                if event.kind == RESULT_KIND and event.id is None:
                    yield b"".join([*lines, line(event.data)])
                    return
                if event.kind in kinds:
                    lines.append(line({"event": event.to_json()}))
            if lines:
                yield b"".join(lines)
    finally:
        subscription.close()
