"""Streams on the event loop: many followers hold no thread, a slow one is ended rather than buffered
without end, a stopping daemon ends them all, and each stream says only what its caller may see."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator

import pytest

from devenv.daemon.api import streams
from devenv.daemon.api.streams import Shared, deliver, follow_events, step_stream
from devenv.daemon.services.events import Ended, EventBus, LiveEvent, StreamEnded


def stored(workspace: str | None, message: str, event_id: int = 1, kind: str = "state") -> LiveEvent:
    return LiveEvent(workspace, kind, message, id=event_id, at=time.time())


async def first_line(stream: AsyncIterator[bytes]) -> bytes:
    async for chunk in stream:
        if chunk.strip():
            return chunk
    raise AssertionError("the stream ended without a line")


def test_a_thousand_followers_hold_no_thread_and_all_get_the_event() -> None:
    bus = EventBus()

    async def main() -> list[bytes]:
        followers = [follow_events(bus, None, None) for _ in range(1000)]
        tasks = [asyncio.create_task(first_line(follower)) for follower in followers]
        while len(bus._async) < 1000:  # every follower is subscribed and waiting
            await asyncio.sleep(0.01)
        started = {thread.ident for thread in threading.enumerate()} - threads_before
        assert not started, "following started threads"  # other tests' threads may end meanwhile; none may start
        publisher = threading.Thread(target=bus.publish, args=(stored("ws", "started"),))
        publisher.start()
        lines = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        publisher.join()
        for follower in followers:
            await follower.aclose()
        return lines

    threads_before = {thread.ident for thread in threading.enumerate()}
    lines = asyncio.run(main())
    assert len(lines) == 1000 and all(b'"message":"started"' in line for line in lines)
    assert len(bus._async) == 0  # closed with their streams


def test_a_reader_that_falls_behind_is_ended_not_buffered() -> None:
    bus = EventBus()
    subscription = bus.subscribe_async(None, backlog=5)

    async def main() -> list[LiveEvent]:
        for number in range(5):
            bus.publish(stored("ws", f"event {number}", number))
        kept = await subscription.next_batch(1)
        assert len(kept) == 5 and subscription.ended is None  # the control: at the backlog, still live
        for number in range(6):
            bus.publish(stored("ws", f"more {number}", number))
        kept = await subscription.next_batch(1)
        with pytest.raises(StreamEnded) as ended:
            await subscription.next_batch(1)
        assert ended.value.reason is Ended.LAGGED
        return kept

    assert [event.message for event in asyncio.run(main())] == [f"more {n}" for n in range(5)]
    assert subscription not in bus._async  # the bus lets it go: nothing more is queued for it


def test_a_stopping_daemon_wakes_and_ends_every_waiting_stream() -> None:
    bus = EventBus()

    async def main() -> float:
        subscription = bus.subscribe_async(None)
        waiting = asyncio.create_task(subscription.next_batch(60))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        started = time.monotonic()
        threading.Thread(target=bus.close).start()
        with pytest.raises(StreamEnded) as ended:
            await asyncio.wait_for(waiting, 5)
        assert ended.value.reason is Ended.CLOSED
        return time.monotonic() - started

    assert asyncio.run(main()) < 1
    assert bus.subscribe_async(None).ended is Ended.CLOSED  # one made after the close ends at once


def test_a_stream_that_never_ran_does_not_stay_subscribed() -> None:
    bus = EventBus()
    subscription = bus.subscribe_async(None)
    assert len(bus._async) == 1  # the control: held, it is subscribed
    del subscription
    gc.collect()
    deadline = time.monotonic() + 5
    while len(bus._async) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(bus._async) == 0


def test_followers_see_stored_visible_events_and_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "HEARTBEAT_SECONDS", 0.05)
    bus = EventBus()
    reads: list[str] = []

    def read(person: str) -> set[str]:  # the store: read in a worker thread, not for every event
        reads.append(threading.current_thread().name)
        return {"mine"}

    views: Shared[str, set[str]] = Shared(read)

    async def main() -> list[bytes]:
        stream = follow_events(
            bus, None, lambda event: event.workspace in (views.peek("alice") or set()), lambda: views.get("alice")
        )
        got = [await anext(stream)]  # nothing happens: a heartbeat
        assert not reads  # a quiet stream reads nothing
        bus.publish(LiveEvent("mine", "progress", "a build line"))  # live only: not a stored event
        for number in range(20):
            bus.publish(stored("theirs", "not for me", number))
        bus.publish(stored("mine", "for me", 99))
        while len(got) < 2 or not got[-1].strip():
            got.append(await anext(stream))
        await stream.aclose()
        return got

    got = asyncio.run(main())
    assert got[0] == b"\n" and b'"message":"for me"' in got[-1]
    assert b"not for me" not in b"".join(got) and b"a build line" not in b"".join(got)
    assert reads and threading.main_thread().name not in reads


def test_a_shared_view_is_read_once_for_every_stream_that_asks() -> None:
    reads: list[str] = []
    gate = threading.Event()

    def read(person: str) -> str:
        gate.wait(5)
        reads.append(person)
        if person == "broken":
            raise RuntimeError("the store is gone")
        return f"{person}'s workspaces"

    views: Shared[str, str] = Shared(read, every=0.2)

    async def main() -> None:
        waiting = [asyncio.create_task(views.get("alice")) for _ in range(100)]
        waiting[0].cancel()  # a stream that goes away does not spoil the read for the others
        await asyncio.sleep(0.05)
        gate.set()
        answers = await asyncio.gather(*waiting[1:])
        assert set(answers) == {"alice's workspaces"} and reads == ["alice"]
        assert await views.get("alice") == "alice's workspaces" and reads == ["alice"]  # fresh: from memory
        await asyncio.sleep(0.25)
        await views.get("alice")
        assert reads == ["alice", "alice"]  # stale: read again
        for _ in range(2):
            with pytest.raises(RuntimeError, match="store is gone"):
                await views.get("broken")
        assert reads.count("broken") == 2 and views.peek("broken") is None  # a failure is not remembered

    asyncio.run(main())


def test_a_step_stream_sends_its_events_then_its_result() -> None:
    bus = EventBus()
    subscription = bus.subscribe_async("ws")

    def work() -> None:
        bus.publish(LiveEvent("ws", "progress", "cloning"))
        bus.publish(LiveEvent("ws", "state", "ignored kind"))
        deliver(subscription, "ws", {"setup": {"ok": True}})

    async def main() -> bytes:
        threading.Thread(target=work).start()
        return b"".join([chunk async for chunk in step_stream(subscription, frozenset({"progress"}))])

    lines = asyncio.run(main()).decode().splitlines()
    assert len(lines) == 2 and '"message":"cloning"' in lines[0] and lines[1] == '{"setup":{"ok":true}}'
    assert subscription not in bus._async
