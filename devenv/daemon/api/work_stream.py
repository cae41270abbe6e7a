"""The streams of work the daemon does for a person (lock, build, verify, promote, a command): progress and
output as NDJSON lines while it runs on a thread of its own, then its answer or its error."""

from __future__ import annotations

import base64
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable

import anyio.to_thread

from devenv import wire
from devenv.backends.base import ExecStream
from devenv.daemon.api.streams import HEARTBEAT, HEARTBEAT_SECONDS, line
from devenv.errors import DevenvError, error_payload
from devenv.progress import ProgressEvent

log = logging.getLogger("devenvd.projects")


class Channel:
    """What a piece of work sends while it runs (progress, output), and how to end it early."""

    def __init__(self) -> None:
        self.frames: queue.Queue[wire.WorkFrame | None] = queue.Queue()
        self.stops: list[Callable[[], None]] = []

    def send(self, frame: wire.WorkFrame) -> None:
        self.frames.put(frame)

    def progress(self, event: ProgressEvent) -> None:
        shown: wire.ProgressView = {
            "kind": event.kind,
            "message": event.message,
            "current": event.current,
            "total": event.total,
        }
        self.send({"progress": shown})

    def on_stop(self, stop: Callable[[], None]) -> None:
        self.stops.append(stop)

    def forward(self, stream: ExecStream) -> wire.WorkFrame:
        """A command's output sent as it comes (base64 by stream; "changed": the files `ci run`'s tests
        wrote); its exit code the answer. A reader that goes away ends the command (`stream.stop`)."""
        if stream.stop is not None:
            self.on_stop(stream.stop)
        for which, chunk in stream:
            text = base64.b64encode(chunk).decode()
            if which == "changed":
                self.send({"changed": text})
            else:
                self.send({"stdout": text} if which == "stdout" else {"stderr": text})
        return {"exit": stream.exit_code if stream.exit_code is not None else 1}


async def work_frames(work: Callable[[Channel], wire.WorkFrame]) -> AsyncIterator[bytes]:
    """Run `work` on a thread of its own; what it sends as NDJSON lines as it comes (a heartbeat line when
    quiet, so the client knows the daemon is there), then its answer or its error.

    A reader that goes away (Starlette cancels the stream when the client disconnects) stops what the work
    registered with `on_stop`, at once: a command nobody reads does not run on. A lock or a build goes on: half
    done it would be lost, and the next one reuses it. An async generator, so that the cancellation reaches
    this `finally` when it happens, not when the garbage collector finds a generator nobody iterates."""
    channel = Channel()
    answer: list[wire.WorkFrame] = []

    def run() -> None:
        try:
            answer.append(work(channel))
        except DevenvError as error:
            answer.append({"error": error_payload(error)})
        except Exception as error:  # a bug: logged with its traceback; the person gets a line, never a hang
            log.exception("project work failed")
            answer.append({"error": error_payload(DevenvError(f"the daemon failed: {error.__class__.__name__}"))})
        finally:
            channel.frames.put(None)

    threading.Thread(target=run, name="project-work", daemon=True).start()
    finished = False
    try:
        while True:
            try:
                frame = await anyio.to_thread.run_sync(_next_frame, channel, abandon_on_cancel=True)
            except queue.Empty:
                yield HEARTBEAT
                continue
            if frame is None:
                break
            yield line(dict(frame))
        finished = True
        yield line(dict(answer[0]))
    finally:
        if not finished:  # on a thread: this runs while the stream is being cancelled, and stopping may take a while
            threading.Thread(target=_stop_all, args=(channel.stops,), name="project-work-stop", daemon=True).start()


def _next_frame(channel: Channel) -> wire.WorkFrame | None:
    return channel.frames.get(timeout=HEARTBEAT_SECONDS)


def _stop_all(stops: list[Callable[[], None]]) -> None:
    for stop in stops:
        try:
            stop()
        except Exception:
            log.exception("stopping work whose reader went away")
