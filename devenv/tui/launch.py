"""The launch wizard: a template (or this folder's devenv.yaml), a name, an engine, resources and autostop.

The daemon is the one validator: the form only fills in the spec's fields and sends it, then shows each
SpecIssue at the field it names, and the build and start events as they stream back. Daemon calls run
on thread workers; closing the form never cancels a launch the daemon has accepted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Log, Select, Static
from textual.worker import get_current_worker

from devenv.client import Client, Stream
from devenv.errors import DevenvError, SpecInvalid, UsageError, error_from_payload
from devenv.upload import SPEC_FILENAME, collect_project, spec_fields, template_names, template_project, with_fields

if TYPE_CHECKING:
    from devenv import wire

FOLDER = "@folder"  # the template choice meaning "this folder's devenv.yaml"
FIELDS = ("template", "name", "engine", "gpu", "cpu", "memory", "autostop")
INPUTS = {  # field -> (label, placeholder); the inputs under the two selects, in Tab order
    "name": ("Name", "lowercase letters, digits, dashes"),
    "gpu": ("GPU", 'none, or "A100:1", "2"'),
    "cpu": ("CPU", "cores, like 4 or 0.5"),
    "memory": ("Memory", 'like "16Gi"'),
    "autostop": ("Autostop", 'idle time, like "30m", "2h" or "off"'),
}
ISSUE_FIELDS = {
    "name": "name",
    "backend": "engine",
    "resources.gpu": "gpu",
    "resources.cpu": "cpu",
    "resources.memory": "memory",
    "autostop": "autostop",
}
# Errors the daemon raises before reading resources, recognised by how their message starts.
MESSAGE_FIELDS = (("workspace name ", "name"), ("no backend named ", "engine"), ("backend ", "engine"))


def issue_field(spec_field: str) -> str:
    """The form field a SpecIssue's field belongs to (`resources.gpu.count` -> gpu); else the template."""
    for prefix, field in ISSUE_FIELDS.items():
        if spec_field == prefix or spec_field.startswith(prefix + "."):
            return field
    return "template"


def message_field(error: DevenvError) -> str | None:
    """The field a non-spec error is about (a bad workspace name, an unknown backend), when recognisable."""
    if not isinstance(error, UsageError) and not error.message.startswith("backend "):
        return None
    if " runs on backend " in error.message:
        return "engine"
    return next((field for prefix, field in MESSAGE_FIELDS if error.message.startswith(prefix)), None)


def as_text(value: Any) -> str:
    """A spec value as typed in the form: YAML's `off` reads as False, and that means "off"."""
    if value is None:
        return ""
    if value is False:
        return "off"
    return str(value)


def cpu_value(text: str) -> int | float | str:
    """A number when the text is one; else the text itself, for the daemon to refuse with its reason."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


class LaunchScreen(ModalScreen[str | None]):
    """Dismisses with the new workspace's name once it runs, or None when closed first."""

    BINDINGS = [
        Binding("ctrl+s", "launch", "Launch", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, client: Client, *, folder: Path | None = None) -> None:
        super().__init__()
        self.client = client
        self.spec_path = (folder if folder is not None else Path.cwd()) / SPEC_FILENAME
        self.backends: list[wire.BackendView] = []
        self.wanted_backend = "local"  # the spec's backend, selected once the daemon's list arrives
        self.chosen_engine: str | None = None  # the engine chosen last
        self.launching: str | None = None  # the workspace a launch is under way for
        self._app: App[Any] | None = None
        self._stream: Stream[wire.ChangeFrame] | None = None

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        choices: list[tuple[str, str]] = [(f"template {name}", name) for name in template_names()]
        if self.spec_path.is_file():
            choices.insert(0, (f"this folder ({self.spec_path})", FOLDER))
        with Vertical(id="launch"):
            yield Static("Launch a workspace", id="launch-title")
            with VerticalScroll(id="launch-form", can_focus=False):
                yield from self._row(
                    "template", "Template", Select(choices, allow_blank=False, compact=True, id="launch-template")
                )
                yield from self._row(
                    "name", "Name", Input(placeholder=INPUTS["name"][1], compact=True, id="launch-name")
                )
                yield from self._row(
                    "engine", "Engine", Select([], prompt="loading engines...", compact=True, id="launch-engine")
                )
                for field in ("gpu", "cpu", "memory", "autostop"):
                    label, placeholder = INPUTS[field]
                    yield from self._row(
                        field, label, Input(placeholder=placeholder, compact=True, id=f"launch-{field}")
                    )
            with Horizontal(id="launch-buttons"):
                yield Button("Launch", variant="primary", compact=True, id="launch-go")
                yield Button("Cancel", compact=True, id="launch-cancel")
            yield Log(id="launch-progress", auto_scroll=True)
        yield Footer(compact=True)

    @staticmethod
    def _row(field: str, label: str, widget: Input | Select[str]) -> ComposeResult:
        with Horizontal(classes="launch-row"):
            yield Label(label, classes="launch-label")
            yield widget
        yield Static("", id=f"launch-{field}-error", classes="launch-error", markup=False)

    def on_mount(self) -> None:
        self._app = self.app
        self.query_one("#launch-progress", Log).write_line("Fill in the form; ctrl+s or Launch starts it.")
        self.query_one("#launch-template", Select).focus()
        self.load_backends()

    # -- from worker threads to the UI thread ----------------------------------------------------

    def _ui(self, callback: Any, *args: Any) -> None:
        """Run `callback` on the UI thread; dropped quietly once the app has stopped."""
        if self._app is None or not self._app.is_running:
            return
        with contextlib.suppress(RuntimeError):
            self._app.call_from_thread(callback, *args)

    # -- the form ------------------------------------------------------------------------------

    def _error(self, field: str, text: str) -> None:
        label = self.query_one(f"#launch-{field}-error", Static)
        label.update(text)
        label.display = bool(text)

    def _project(self, choice: str) -> dict[str, Any]:
        """The upload for a choice, read again each time: the person may have edited devenv.yaml meanwhile."""
        return collect_project(self.spec_path) if choice == FOLDER else template_project(choice)

    @on(Select.Changed, "#launch-template")
    def _template_changed(self, event: Select.Changed) -> None:
        """Fill the fields from the chosen spec, so the defaults are the spec's own."""
        self._error("template", "")
        if event.value is Select.NULL:
            return
        try:
            fields = spec_fields(self._project(str(event.value)))
        except DevenvError as error:
            self._error("template", error.render())
            return
        resources = found if isinstance(found := fields.get("resources"), dict) else {}
        values = {
            "name": fields.get("name"),
            "autostop": fields.get("autostop"),
            **{key: resources.get(key) for key in ("gpu", "cpu", "memory")},
        }
        for field, value in values.items():
            self.query_one(f"#launch-{field}", Input).value = as_text(value)
        self.wanted_backend = as_text(fields.get("backend")) or "local"
        self._fill_engines()

    @work(thread=True, exclusive=True, group="backends")
    def load_backends(self) -> None:
        try:
            self._ui(self._backends_loaded, self.client.backends(), None)
        except DevenvError as error:
            self._ui(self._backends_loaded, [], error)

    def _backends_loaded(self, backends: list[wire.BackendView], error: DevenvError | None) -> None:
        """Without the daemon's list, the spec's engine stays choosable: the launch itself says what is wrong."""
        self.backends = backends
        if error is not None:
            self.notify(f"cannot list the engines: {error.render()}", severity="error", markup=False, timeout=8)
        if self.is_attached:
            self._fill_engines()

    def _fill_engines(self) -> None:
        """The daemon's backends (unusable ones say why), plus the spec's own when the daemon does not know it."""
        engine = self.query_one("#launch-engine", Select)
        options = []
        for item in self.backends:
            note = f" - unusable: {item.get('error') or 'unknown reason'}" if not item.get("usable") else ""
            options.append((f"{item['name']} ({item.get('type')}){note}", str(item["name"])))
        if self.wanted_backend not in {value for _, value in options}:
            options.append((f"{self.wanted_backend} (not listed by the daemon)", self.wanted_backend))
        engine.set_options(options)
        engine.prompt = "choose an engine"
        engine.value = self.wanted_backend
        if problem := self._unusable(self.wanted_backend):
            self._error("engine", problem)

    @on(Select.Changed, "#launch-engine")
    def _engine_changed(self, event: Select.Changed) -> None:
        """A new choice says at once whether it can be used; refilling the list keeps what the daemon said."""
        if event.value is Select.NULL or event.value == self.chosen_engine:
            return
        self.chosen_engine = str(event.value)
        self._error("engine", self._unusable(event.value))

    def _unusable(self, value: object) -> str:
        item = next((item for item in self.backends if item["name"] == value), None)
        if item is None or item.get("usable"):
            return ""
        return f"engine {value} cannot be used: {item.get('error') or 'unknown reason'}"

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        field = (event.input.id or "").removeprefix("launch-")
        if field in INPUTS:
            self._error(field, "")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        """Enter moves on to the next field; in the last one it launches."""
        event.stop()
        if event.input.id == "launch-autostop":
            self.action_launch()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch-go":
            self.action_launch()
        else:
            self.action_cancel()

    # -- launching -----------------------------------------------------------------------------

    def _text(self, field: str) -> str | None:
        text = self.query_one(f"#launch-{field}", Input).value.strip()
        return text or None

    def action_launch(self) -> None:
        if self.launching:
            self.notify(f"{self.launching} is being launched already", severity="warning")
            return
        for field in FIELDS:
            self._error(field, "")
        engine = self.query_one("#launch-engine", Select).value
        backend = None if engine is Select.NULL else str(engine)
        if problem := self._unusable(backend):
            self._show_at("engine", problem)
            return
        name, cpu = self._text("name"), self._text("cpu")
        try:
            project = self._project(str(self.query_one("#launch-template", Select).value))
        except DevenvError as error:
            self._show_at("template", error.render())
            return
        upload = with_fields(
            project,
            name=name,
            backend=backend,
            gpu=self._text("gpu"),
            cpu=None if cpu is None else cpu_value(cpu),
            memory=self._text("memory"),
            autostop=self._text("autostop"),
        )
        self.launching = name or "the workspace"
        self.query_one("#launch-go", Button).disabled = True
        self.query_one("#launch-progress", Log).write_line(f"launching {self.launching}...")
        self.launch(upload, name)

    @work(thread=True, exclusive=True, group="launch")
    def launch(self, upload: dict[str, Any], name: str | None) -> None:
        """Follow the daemon's stream of events to the final frame; stop reading (only) if the form closed."""
        worker = get_current_worker()
        self._stream = self.client.up(upload, name=name)
        try:
            for frame in self._stream:
                if worker.is_cancelled:
                    return
                if "event" in frame:
                    self._ui(self._progress, frame["event"])
                elif "error" in frame:
                    self._ui(self._failed, error_from_payload(frame["error"]))
                    return
                elif "workspace" in frame:
                    self._ui(self._settled, frame["workspace"])
                    return
                elif "deleted" in frame:
                    self._ui(self._failed, DevenvError(f"{frame['deleted']} was deleted while it launched"))
                    return
            self._ui(self._failed, DevenvError("the daemon ended the stream before the workspace settled"))
        except DevenvError as error:
            self._ui(self._failed, error)

    def _say(self, line: str) -> None:
        if self.is_attached:
            self.query_one("#launch-progress", Log).write_line(line)

    def _progress(self, event: wire.EventView) -> None:
        self._say(f"{event.get('kind', 'event')}: {event.get('message', '')}")

    def _finished(self) -> None:
        self.launching = None
        if self.is_attached:
            self.query_one("#launch-go", Button).disabled = False

    def _settled(self, workspace: wire.WorkspaceView) -> None:
        name, state = str(workspace.get("name")), str(workspace.get("state"))
        self._finished()
        if state == "running":
            self.notify(f"{name} is running", markup=False)
            if self.is_attached and self.is_current:
                self.dismiss(name)
            return
        reason = workspace.get("reason") or workspace.get("error_code") or "no reason given"
        self._say(f"{name} settled {state}: {reason}")
        self.notify(f"{name} is {state}: {reason}", severity="error", markup=False, timeout=10)

    def _failed(self, error: DevenvError) -> None:
        """Spec issues and recognisable refusals go to their fields; anything else is a notification."""
        self._finished()
        if isinstance(error, SpecInvalid) and error.issues:
            self._say(f"the daemon refused the spec: {error.message}")
            texts: dict[str, list[str]] = {}
            for issue in error.issues:
                text = f"{issue.message} ({issue.hint})" if issue.hint else issue.message
                field = issue_field(issue.field)
                texts.setdefault(field, []).append(text if field != "template" else f"{issue.field}: {text}")
            for field in reversed([field for field in FIELDS if field in texts]):  # focus ends on the first
                self._show_at(field, "\n".join(texts[field]))
            return
        self._say(f"failed: {error.render()}")
        if (at := message_field(error)) is not None:
            self._show_at(at, error.render())
            return
        self.notify(error.render(), severity="error", markup=False, timeout=10)

    def _show_at(self, field: str, text: str) -> None:
        if not self.is_attached:
            return
        self._error(field, text)
        self.query_one(f"#launch-{field}").focus()

    def action_cancel(self) -> None:
        """Close; a launch under way goes on in the daemon, and the dashboard shows how it ends."""
        if self.launching:
            self.notify(f"{self.launching} goes on launching; the dashboard shows its state")
        self.workers.cancel_group(self, "launch")
        self.dismiss(None)

    def on_unmount(self) -> None:
        """Stop reading the launch's stream (the daemon's work goes on): a build may stream for minutes."""
        if self._stream is not None:
            self._stream.close()
