"""Modal screens of the TUI: a yes/no confirmation, and one workspace's details with its recent events."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from devenv.client import Client
from devenv.errors import DevenvError

EVENTS_SHOWN = 20


class ConfirmScreen(ModalScreen[bool]):
    """Ask before anything that cannot be undone; dismisses with True (yes) or False (no)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question, id="confirm-question", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def _when(stamp: Any) -> str:
    if not isinstance(stamp, int | float):
        return "-"
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _value(key: str, value: Any) -> str:
    if value is None or value == []:
        return "-"
    if key.endswith("_at"):
        return _when(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def setup_summary(setup: dict[str, Any] | None) -> dict[str, str]:
    """What the start's setup steps found, one line each (the raw JSON is `devenv status --json`)."""
    if not setup:
        return {}
    lines: dict[str, str] = {}
    secrets = setup.get("secrets") or {}
    if secrets.get("delivered") or secrets.get("missing"):
        missing = secrets.get("missing") or []
        lines["secrets"] = f"{len(secrets.get('delivered') or [])} delivered" + (
            f", MISSING {', '.join(missing)}" if missing else ""
        )
    for step in ("repo", "data"):
        state = setup.get(step)
        if state:
            lines[step] = state.get("message") or state.get("status", "")
    facts = setup.get("repo_facts") or {}
    if facts.get("commit"):
        lines["commit"] = f"{facts['commit'][:12]} on {facts.get('branch') or '-'}" + (
            " (dirty)" if facts.get("dirty") else ""
        )
    return lines


def fields_text(workspace: dict[str, Any]) -> Text:
    """The workspace's JSON as aligned `key  value` lines: readable, and every field is there
    (the setup steps' record as one line per step)."""
    shown = {key: value for key, value in workspace.items() if key != "setup"}
    shown.update(setup_summary(workspace.get("setup")))
    width = max((len(key) for key in shown), default=0)
    text = Text()
    for key, value in shown.items():
        text.append(key.ljust(width), style="bold")
        text.append(f"  {_value(key, value)}\n")
    return text


def events_text(events: list[dict[str, Any]]) -> Text:
    """Oldest first, as a log reads."""
    if not events:
        return Text("(no events)", style="dim")
    text = Text()
    for event in sorted(events, key=lambda item: item.get("at") or 0):
        text.append(_when(event.get("at")), style="dim")
        text.append(f"  {event.get('kind', '')}", style="cyan")
        text.append(f"  {event.get('message', '')}\n")
    return text


class DetailsScreen(ModalScreen[None]):
    """One workspace in full: loaded on a thread so the screen opens at once, even over a slow link."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False)]

    def __init__(self, client: Client, name: str) -> None:
        super().__init__()
        self.client = client
        self.workspace_name = name

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details"):
            yield Static(Text(f"workspace {self.workspace_name}"), id="details-title")
            yield Static(Text("loading...", style="dim"), id="details-fields")
            yield Static(Text(f"last {EVENTS_SHOWN} events"), id="details-events-title")
            yield Static(Text("loading...", style="dim"), id="details-events")
            yield Static(Text("spec"), id="details-spec-title")
            yield Static(Text("loading...", style="dim"), id="details-spec", markup=False)

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            workspace = self.client.workspace(self.workspace_name)
            project = self.client.project(self.workspace_name)
            events = self.client.events(self.workspace_name, limit=EVENTS_SHOWN)
        except DevenvError as error:
            self.app.call_from_thread(self._failed, error)
            return
        self.app.call_from_thread(self._show, workspace, project, events)

    def _show(self, workspace: dict[str, Any], project: dict[str, Any], events: list[dict[str, Any]]) -> None:
        if not self.is_attached:
            return
        pins = {"lock_hash": project.get("lock_hash"), "base_digest": project.get("base_digest")}
        self.query_one("#details-fields", Static).update(fields_text({**workspace, **pins}))
        self.query_one("#details-events", Static).update(events_text(events))
        spec = project.get("spec")
        title = f"spec ({project['spec_path']})" if project.get("spec_path") else "spec"
        self.query_one("#details-spec-title", Static).update(Text(title))
        self.query_one("#details-spec", Static).update(Text(spec) if spec else Text("(adopted: no spec)", style="dim"))

    def _failed(self, error: DevenvError) -> None:
        self.app.notify(error.render(), severity="error", markup=False)
        if self.is_attached:
            self.query_one("#details-fields", Static).update(Text(error.render(), style="red"))

    def action_close(self) -> None:
        self.dismiss(None)
