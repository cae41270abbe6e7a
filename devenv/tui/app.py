"""`devenv tui`: a dashboard of workspaces, refreshed by polling, with start/stop/delete/details/Jupyter/ssh keys.

Every daemon call blocks, so each runs on a thread worker and hands its result to the UI thread; the
keyboard never waits on the network. The daemon is reached only through devenv.client.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SuspendNotSupported, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.widgets.data_table import ColumnKey
from textual.worker import get_current_worker

from devenv.client import Client, Stream
from devenv.errors import DaemonUnreachable, DevenvError, error_from_payload
from devenv.tui import LIST_LIMIT
from devenv.tui.rows import COLUMNS, row_cells
from devenv.tui.screens import ConfirmScreen, DetailsScreen

if TYPE_CHECKING:
    from devenv import wire

UNREACHABLE = "daemon unreachable, retrying"
REFRESH_ON = {"state", "api", "reconcile", "autostop"}  # event kinds that change a row
FOLLOW_RETRY = 1.0


class WorkspaceTable(DataTable[str | Text]):
    """The dashboard's table: `enter` (select a row) opens its details, and the footer says so."""

    BINDINGS = [Binding("enter", "select_cursor", "Info", tooltip="The workspace's fields and recent events")]


class DevenvApp(App[None]):
    """The dashboard. `poll_interval` is how often the list is fetched again (tests make it short)."""

    TITLE = "devenv"
    CSS_PATH = "devenv.tcss"
    BINDINGS = [
        Binding("n", "launch", "New", tooltip="Launch a workspace from a template or this folder's devenv.yaml"),
        Binding("s", "start", "Start", tooltip="Start the selected workspace"),
        Binding("x", "stop", "Stop", tooltip="Stop the selected workspace"),
        Binding("d", "delete", "Del", tooltip="Delete the selected workspace and its home volume"),
        Binding("t", "ssh", "ssh", tooltip="SSH into the selected workspace in this terminal; exit to come back"),
        Binding("l", "logs", "Logs", tooltip="Follow the selected workspace's logs"),
        Binding("j", "jupyter", "Lab", tooltip="Open the selected workspace's JupyterLab in the browser"),
        Binding("g", "grants", "Grants", tooltip="Who may reach the selected workspace; grant and revoke"),
        Binding("c", "copy_ssh", "Copy", tooltip="Copy `devenv ssh NAME` to the clipboard"),
        Binding("r", "refresh", "Refresh", show=False, tooltip="Fetch the list of workspaces now"),
        Binding("q", "quit", "Quit", show=False, tooltip="Leave the dashboard"),
    ]
    COMMANDS_HELP = {  # for the command palette: (title, help) per action
        "launch": ("New workspace", "Launch a workspace from a template or this folder's devenv.yaml"),
        "start": ("Start workspace", "Start the selected workspace"),
        "stop": ("Stop workspace", "Stop the selected workspace"),
        "delete": ("Delete workspace", "Delete the selected workspace and its home volume (asks first)"),
        "details": ("Workspace details", "Fields and last events of the selected workspace"),
        "ssh": ("SSH in", "SSH into the selected workspace in this terminal; exit to come back"),
        "logs": ("Workspace logs", "Follow the selected workspace's logs"),
        "grants": ("Workspace grants", "List, grant and revoke access to the selected workspace"),
        "jupyter": ("Open JupyterLab", "Open the selected workspace's JupyterLab in the browser"),
        "copy_ssh": ("Copy ssh command", "Copy `devenv ssh NAME` for the selected workspace"),
        "refresh": ("Refresh", "Fetch the list of workspaces now"),
    }

    def __init__(
        self,
        client: Client | None = None,
        *,
        poll_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        first: Future[wire.WorkspacePage] | None = None,
    ) -> None:
        super().__init__()
        self._first = first
        self.client = client or Client()
        self.poll_interval = poll_interval
        self.clock = clock  # wall time for uptimes and the status line (snapshot tests fix it)
        self.reachable: bool | None = None  # None until the first answer (or failure)
        self._wake = threading.Event()
        self._closing = False
        self._events: Stream[wire.EventView] | None = None
        self._select_when_listed: str | None = None
        self._changes: set[Stream[wire.ChangeFrame]] = set()  # start/stop/remove streams being read

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        table = WorkspaceTable(id="workspaces", cursor_type="row", zebra_stripes=True)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static(f"connecting to {self.client.target.describe()}...", id="status", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.poll()
        self.follow()

    def on_unmount(self) -> None:
        self._closing = True
        self._wake.set()
        for stream in [self._events, *self._changes]:  # quitting never waits on a stream
            if stream is not None:
                stream.close()

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#workspaces", DataTable)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The dashboard's keys in the command palette too, for whoever does not remember them."""
        yield from super().get_system_commands(screen)
        if screen is self.screen and not isinstance(screen, ConfirmScreen | DetailsScreen):
            for action, (title, help_text) in self.COMMANDS_HELP.items():
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))

    # -- from worker threads to the UI thread ----------------------------------------------------

    def _ui(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback` on the UI thread; a worker outliving a closing app drops its result quietly."""
        if self._closing:
            return
        with contextlib.suppress(RuntimeError):  # the app stopped between the check and the call
            self.call_from_thread(self._unless_gone, callback, *args)

    def _unless_gone(self, callback: Callable[..., Any], *args: Any) -> None:
        """A result that lands while the app is taking its widgets down has nowhere to go: drop it."""
        with contextlib.suppress(NoMatches):
            callback(*args)

    def _error(self, error: DevenvError) -> None:
        self.notify(error.render(), severity="error", markup=False, timeout=8)

    def _status(self, text: str, *, unreachable: bool = False) -> None:
        status = self.query_one("#status", Static)
        status.update(text)
        status.set_class(unreachable, "unreachable")

    # -- polling ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="poll", name="poll workspaces")
    def poll(self) -> None:
        """Fetch the list every `poll_interval` seconds, or at once when woken (refresh key, after an action)."""
        worker = get_current_worker()
        while not worker.is_cancelled and not self._closing:
            self._wake.clear()
            first, self._first = self._first, None
            try:
                answer = first.result() if first is not None else self.client.workspaces(limit=LIST_LIMIT)
            except DaemonUnreachable as error:
                self._ui(self._unreachable, error)
            except DevenvError as error:
                self._ui(self._error, error)
            else:
                self._ui(self._show, answer["items"])
            deadline = time.monotonic() + self.poll_interval
            while not worker.is_cancelled and not self._closing and time.monotonic() < deadline:
                if self._wake.wait(min(0.1, self.poll_interval)):
                    break

    @work(thread=True, exclusive=True, group="follow", name="follow events")
    def follow(self) -> None:
        """Refresh as soon as the daemon records a change, rather than at the next poll.

        A stored event (a state change, an API call, the reconciler) wakes the poller; when the stream
        breaks (daemon gone), polling goes on alone and the stream is opened again a second later.
        """
        worker = get_current_worker()
        while not worker.is_cancelled and not self._closing:
            self._events = self.client.follow_events()
            if self._closing:  # on_unmount ran between the check above and this stream: close it too
                self._events.close()
            try:
                for event in self._events:
                    if event.get("kind") in REFRESH_ON:
                        self._wake.set()
            except DevenvError:
                pass
            if not self._closing:
                time.sleep(FOLLOW_RETRY)

    def _unreachable(self, error: DaemonUnreachable) -> None:
        if self.reachable is not False:  # once per outage, not every poll
            self.notify(f"{UNREACHABLE}\n{error.render()}", severity="error", markup=False, timeout=8)
        self.reachable = False
        self._status(f"{UNREACHABLE} ({self.client.target.describe()})", unreachable=True)

    def _show(self, workspaces: list[wire.WorkspaceView]) -> None:
        """Update rows in place, keeping the cursor on the same workspace by name."""
        if self.reachable is False:
            self.notify("the daemon answers again")
        self.reachable = True
        table = self.table
        selected = self.selected()
        now = self.clock()
        wanted = {workspace["name"]: row_cells(workspace, now) for workspace in workspaces}
        for key in [key for key in table.rows if key.value not in wanted]:
            table.remove_row(key)
        for name, cells in wanted.items():
            if name in table.rows:
                for column, value in cells.items():
                    if table.get_cell(name, column) != value:
                        # a width check re-measures the whole column: only for a value wider than it
                        wider = cell_len(str(value)) > table.columns[ColumnKey(column)].content_width
                        table.update_cell(name, column, value, update_width=wider)
            else:
                table.add_row(*(cells[key] for _, key in COLUMNS), key=name)
        if self._select_when_listed in wanted:  # a workspace just launched: the cursor goes to it
            selected, self._select_when_listed = self._select_when_listed, None
        if selected is not None and selected in wanted:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        count = len(wanted)
        self._status(
            f"{count} workspace{'s' if count != 1 else ''} on {self.client.target.describe()}"
            f" - updated {dt.datetime.fromtimestamp(now):%H:%M:%S}"
        )

    def selected(self) -> str | None:
        """The workspace under the cursor, if any."""
        table = self.table
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # the cursor points past the rows left after a removal
            return None
        return key.value

    def _target(self) -> str | None:
        name = self.selected()
        if name is None:
            self.notify("no workspace selected", severity="warning")
        return name

    # -- actions ---------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._wake.set()

    def action_start(self) -> None:
        if name := self._target():
            self.change("start", name)

    def action_stop(self) -> None:
        if name := self._target():
            self.change("stop", name)

    def action_delete(self) -> None:
        name = self._target()
        if name is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.change("remove", name)

        self.push_screen(ConfirmScreen(f"Delete workspace {name} and its home volume?"), answered)

    def action_details(self) -> None:
        if name := self._target():
            self.push_screen(DetailsScreen(self.client, name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click) on a row opens its details."""
        event.stop()
        self.action_details()

    def action_launch(self) -> None:
        from devenv.tui.launch import LaunchScreen

        def launched(name: str | None) -> None:
            self._select_when_listed = name
            self._wake.set()

        self.push_screen(LaunchScreen(self.client), launched)

    def action_logs(self) -> None:
        if name := self._target():
            from devenv.tui.logs import LogsScreen

            self.push_screen(LogsScreen(self.client, name))

    def action_grants(self) -> None:
        if name := self._target():
            from devenv.tui.grants import GrantsScreen

            self.push_screen(GrantsScreen(self.client, name))

    def action_ssh(self) -> None:
        """Hand the terminal to `devenv ssh NAME` (the CLI owns certificates and known hosts), then come back."""
        name = self._target()
        if name is None:
            return
        command = [sys.executable, "-m", "devenv", "ssh", name]
        try:
            with self.suspend():
                print(f"devenv: ssh {name} (exit the shell to return to the dashboard)", flush=True)
                code = subprocess.call(command, env=self._cli_env())
        except SuspendNotSupported:
            self.notify(
                f"this terminal cannot be handed over; run `devenv ssh {name}` in another one",
                severity="warning",
                markup=False,
            )
            return
        if code not in (0, 130):
            self.notify(f"ssh {name} ended with exit code {code}", severity="warning", markup=False)
        self._wake.set()

    def _cli_env(self) -> dict[str, str]:
        """The environment that points a `devenv` child at the daemon this dashboard shows."""
        env = {**os.environ, "DEVENV_HOST": self.client.target.describe()}
        if self.client.target.token:
            env["DEVENV_TOKEN"] = self.client.target.token
        return env

    def action_copy_ssh(self) -> None:
        if name := self._target():
            line = f"devenv ssh {name}"
            self.copy_to_clipboard(line)
            self.notify(f"copied: {line}", markup=False)

    def action_jupyter(self) -> None:
        if name := self._target():
            self.jupyter(name)

    def _frames(self, verb: str, name: str) -> Stream[wire.ChangeFrame]:
        if verb == "start":
            return self.client.start(name)
        if verb == "stop":
            return self.client.stop(name)
        return self.client.remove(name)

    @work(thread=True, group="change")
    def change(self, verb: str, name: str) -> None:
        """Consume a start/stop/remove stream: progress on the status line, the outcome as a notification."""
        self._ui(self.notify, f"{verb} {name}...")
        stream = self._frames(verb, name)
        self._changes.add(stream)
        try:
            for frame in stream:
                if "event" in frame:
                    self._ui(self._status, f"{name}: {frame['event'].get('message', '')}")
                elif "error" in frame:
                    self._ui(self._error, error_from_payload(frame["error"]))
                elif "deleted" in frame:
                    self._ui(self.notify, f"{frame['deleted']} deleted")
                elif "workspace" in frame:
                    self._ui(self.notify, f"{name} is {frame['workspace'].get('state')}")
        except DevenvError as error:
            self._ui(self._error, error)
        finally:
            self._changes.discard(stream)
            self._wake.set()

    @work(thread=True, group="jupyter")
    def jupyter(self, name: str) -> None:
        """A single-use login link opened in the browser; the clean URL is shown to bookmark."""
        try:
            link = self.client.jupyter_login(name)
        except DevenvError as error:
            self._ui(self._error, error)
            return
        if not os.environ.get("DEVENV_NO_BROWSER"):
            import webbrowser

            webbrowser.open(link["url"])
        self._ui(self.notify, f"JupyterLab of {name}: {link.get('clean_url', link['url'])}")


def run(client: Client | None = None, first: Future[wire.WorkspacePage] | None = None) -> None:
    """Run the dashboard in this terminal until the user quits; `first` is a list already asked for."""
    DevenvApp(client, first=first).run()
