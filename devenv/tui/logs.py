"""The logs pane: one workspace's output, followed as it comes (`client.logs(follow=True)`).

A plain daemon thread reads the stream, since its read blocks on the socket, and queues the raw
chunks. The screen's worker gathers what arrives within BATCH_WINDOW, decodes and splits it into
lines (a line or a UTF-8 character may straddle two chunks), and hands the batch to the UI thread
in one call: however fast the output, the UI gets a few updates a second, not one per line.
Closing the screen closes the stream (which wakes the reader) and the worker sees it within
READ_WAIT, so neither closing the pane nor quitting the app waits on a quiet stream.
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Log, Static
from textual.worker import Worker, get_current_worker

from devenv.client import Client, Stream
from devenv.errors import DevenvError

TAIL = 200  # lines of history shown before following
MAX_LINES = 10_000  # the pane keeps this many; older lines go
READ_WAIT = 0.1  # seconds between checks that the screen is still open
BATCH_WINDOW = 0.05  # seconds of output gathered into one UI update: at most 20 a second, however fast it comes
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")  # colours, titles: Log shows them raw
END = "(end of logs)"
FOLLOWING = "following new output (f: stop scrolling along)"
PAUSED = "not scrolling along: new lines arrive below (f: follow again)"


@dataclass(frozen=True)
class _Ended:
    """The reader's last word: the stream ended, cleanly (error None) or not."""

    error: DevenvError | None = None


class LineSplitter:
    """Bytes in, complete lines out: keeps a partial line (and a partial UTF-8 character) for the next chunk."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes, *, final: bool = False) -> list[str]:
        *lines, self._pending = (self._pending + self._decoder.decode(data, final=final)).split("\n")
        if final and self._pending:
            lines.append(self._pending)
            self._pending = ""
        return [ANSI.sub("", line.removesuffix("\r")) for line in lines]


class LogsScreen(ModalScreen[None]):
    """A workspace's logs, following new output; `f` stops and resumes scrolling along."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("f", "toggle_follow", "Follow", tooltip="Scroll along with new output, or stay where you are"),
    ]

    def __init__(self, client: Client, name: str) -> None:
        super().__init__()
        self.client = client
        self.workspace_name = name
        self.follower: Worker[None] | None = None
        self.ended = False
        self._gone = threading.Event()
        self._stream: Stream[bytes] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="logs-dialog"):
            yield Static(Text(f"logs of {self.workspace_name}"), id="logs-title")
            yield Log(id="logs", max_lines=MAX_LINES, auto_scroll=True)
            yield Static(Text("connecting...", style="dim"), id="logs-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.log_pane.focus()
        self.follower = self.follow()

    def on_unmount(self) -> None:
        """Stop following: the worker sees this within READ_WAIT; closing the stream wakes the reader."""
        self._gone.set()
        if self._stream is not None:
            self._stream.close()

    @property
    def log_pane(self) -> Log:
        return self.query_one("#logs", Log)

    # -- worker threads --------------------------------------------------------------------------

    @work(thread=True, exclusive=True, name="follow logs")
    def follow(self) -> None:
        """Drain the reader's queue: every batch of whole lines goes to the UI thread in one call."""
        worker = get_current_worker()
        app = self.app
        inbox: queue.SimpleQueue[bytes | _Ended] = queue.SimpleQueue()
        self._stream = stream = self.client.logs(self.workspace_name, follow=True, tail=TAIL)  # sent when read
        if self._gone.is_set():  # closed before the stream was there to close
            return
        threading.Thread(
            target=self._read, args=(stream, inbox), daemon=True, name=f"logs of {self.workspace_name}"
        ).start()
        splitter = LineSplitter()
        self._ui(app, self._status, FOLLOWING)
        while not (worker.is_cancelled or self._gone.is_set()):
            try:
                items = [inbox.get(timeout=READ_WAIT)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + BATCH_WINDOW  # gather what else comes meanwhile: one UI update
            with contextlib.suppress(queue.Empty):
                while not isinstance(items[-1], _Ended) and (left := deadline - time.monotonic()) > 0:
                    items.append(inbox.get(timeout=left))
            ended = items[-1] if isinstance(items[-1], _Ended) else None
            data = b"".join(item for item in items if isinstance(item, bytes))
            lines = splitter.feed(data, final=ended is not None)
            if lines:
                self._ui(app, self._append, lines)
            if ended is not None:
                self._ui(app, self._ended, ended.error)
                return

    def _read(self, stream: Stream[bytes], inbox: queue.SimpleQueue[bytes | _Ended]) -> None:
        """Block on the stream, queueing each chunk; last, one _Ended. Never raises: no one would see it."""
        error: DevenvError | None = None
        try:
            for chunk in stream:
                if self._gone.is_set():
                    break
                inbox.put(chunk)
        except DevenvError as exc:
            error = exc
        except Exception as exc:  # anything else the stream could raise: shown, not a thread's traceback
            error = DevenvError(
                f"the log stream broke off ({exc or exc.__class__.__name__})",
                hint="close the logs and open them again (l)",
            )
        finally:
            inbox.put(_Ended(None if self._gone.is_set() else error))
            stream.close()

    def _ui(self, app: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback` on the UI thread, unless the screen (or the whole app) is already gone."""
        if self._gone.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the app stopped meanwhile
            app.call_from_thread(callback, *args)

    # -- on the UI thread ------------------------------------------------------------------------

    def _append(self, lines: list[str]) -> None:
        if self.is_attached:
            self.log_pane.write_lines([line or " " for line in lines])  # Log drops empty strings

    def _ended(self, error: DevenvError | None) -> None:
        self.ended = True
        if error is not None:
            self.app.notify(error.render(), severity="error", markup=False, timeout=8)
        if not self.is_attached:
            return
        if error is None:
            self.log_pane.write_line(END)
            self._status(END)
        else:
            self.log_pane.write_line(f"error: {error.message.splitlines()[0]}")
            self._status(f"error: {error.message.splitlines()[0]}", "red")

    def _status(self, text: str, style: str = "dim") -> None:
        if not self.is_attached:
            return
        if text == FOLLOWING and not self.log_pane.auto_scroll:
            text = PAUSED
        self.query_one("#logs-status", Static).update(Text(text, style=style))

    # -- actions ---------------------------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        pane = self.log_pane
        pane.auto_scroll = not pane.auto_scroll
        if pane.auto_scroll:
            pane.scroll_end(animate=False)
        if not self.ended:
            self._status(FOLLOWING)

    def action_close(self) -> None:
        self.dismiss(None)
