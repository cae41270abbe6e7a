"""Who may reach a workspace, with granting and revoking: the calls `devenv access` makes, from the TUI.

`client.access(name)` lists the owner apart from the grants: the owner always has access, can be
neither granted nor revoked, and gets a row of its own. Every daemon call runs on a thread worker,
so the form stays usable over a slow link; the daemon validates names and TTLs, and its errors are
shown under the field they name.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Label, Static

from devenv.client import Client
from devenv.errors import DevenvError
from devenv.tui.rows import countdown
from devenv.tui.screens import ConfirmScreen

COLUMNS = [
    ("PERSON", "person"),
    ("SSH", "ssh"),
    ("JUPYTER", "jupyter"),
    ("EXPIRES", "expires"),
    ("GRANTED BY", "granted_by"),
]
OWNER = "(owner)"
FIELDS = {"person": "person ", "ttl": "--ttl "}  # an error about a field starts so (devenvd's check_person, parse_ttl)


def _yes(flag: Any) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="dim")


class GrantsScreen(ModalScreen[None]):
    """A workspace's grants, with a form to grant and `r` to revoke the person under the cursor."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("r", "revoke", "Revoke", tooltip="End the selected person's access (asks first)"),
    ]

    def __init__(self, client: Client, name: str) -> None:
        super().__init__()
        self.client = client
        self.workspace_name = name
        self.owner: str | None = None
        self.expires: dict[str, float] = {}  # person -> unix time their grant ends, for the countdown
        self._select: str | None = None  # the row to put the cursor on after the next load

    def compose(self) -> ComposeResult:
        with Vertical(id="grants-dialog"):
            yield Static(Text(f"grants on {self.workspace_name}"), id="grants-title")
            yield DataTable(id="grants", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="grants-actions"):
                yield Static(Text("loading...", style="dim"), id="grants-status")
                yield Button("Revoke (r)", id="grant-revoke", variant="error", compact=True)
            with Horizontal(classes="grant-row"):
                yield Label("grant to", classes="grant-label")
                yield Input(placeholder="person (a token's name, e.g. alice)", id="grant-person", compact=True)
            yield Label("", id="grant-person-error", classes="grant-error", markup=False)
            with Horizontal(classes="grant-row"):
                yield Checkbox("SSH", True, id="grant-ssh", compact=True)
                yield Checkbox("Jupyter", True, id="grant-jupyter", compact=True)
                yield Label("for", classes="grant-label")
                yield Input(placeholder="4h, 30m (empty: until revoked)", id="grant-ttl", compact=True)
                yield Button("Grant", id="grant-go", variant="primary", compact=True)
            yield Label("", id="grant-ttl-error", classes="grant-error", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.table.add_column(label, key=key)
        self.table.focus()
        self._field_errors(None)
        self.set_interval(1.0, self._tick)
        self.load()

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#grants", DataTable)

    def _ui(self, callback: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app stopped meanwhile
            self.app.call_from_thread(callback, *args)

    def _failed(self, error: DevenvError) -> None:
        self.app.notify(error.render(), severity="error", markup=False, timeout=8)

    # -- the table ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load")
    def load(self) -> None:
        try:
            answer = self.client.access(self.workspace_name)
        except DevenvError as error:
            self._ui(self._load_failed, error)
            return
        self._ui(self._show, answer)

    def _load_failed(self, error: DevenvError) -> None:
        self._failed(error)
        if self.is_attached:
            self.query_one("#grants-status", Static).update(Text(error.message.splitlines()[0], style="red"))

    def _show(self, answer: dict[str, Any]) -> None:
        if not self.is_attached:
            return
        table = self.table
        selected = self._select or self.person_selected()
        self._select = None
        table.clear()
        self.owner = answer["owner"]
        table.add_row(self.owner, _yes(True), _yes(True), "-", Text(OWNER, style="dim"), key=self.owner)
        self.expires = {}
        for grant in answer["grants"]:
            person = grant["person"]
            if grant.get("expires_at"):
                self.expires[person] = grant["expires_at"]
            table.add_row(
                person,
                _yes(grant["ssh"]),
                _yes(grant["jupyter"]),
                self._left(person),
                grant.get("granted_by") or "-",
                key=person,
            )
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        count = len(answer["grants"])
        self.query_one("#grants-status", Static).update(
            Text(f"owner {self.owner}; {count} grant{'s' if count != 1 else ''}", style="dim")
        )

    def _left(self, person: str) -> str:
        return countdown(self.expires[person] - time.time()) if person in self.expires else "-"

    def _tick(self) -> None:
        """The countdowns run down each second; a grant that ran out makes the daemon tell what is left."""
        table = self.table
        for person in self.expires:
            if person in table.rows:
                table.update_cell(person, "expires", self._left(person), update_width=True)
        if any(stamp <= time.time() for stamp in self.expires.values()):
            self.load()

    def person_selected(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        with contextlib.suppress(Exception):  # the cursor past the last row
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None

    # -- granting ----------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "grant-go":
            self.action_grant()
        elif event.button.id == "grant-revoke":
            self.action_revoke()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in either field grants, as the button does."""
        self.action_grant()

    def action_grant(self) -> None:
        person = self.query_one("#grant-person", Input).value.strip()
        ttl = self.query_one("#grant-ttl", Input).value.strip() or None
        self._field_errors(None)
        if not person:
            self._field_errors("person", "who? type the person's name (as their token is named)")
            return
        ssh = self.query_one("#grant-ssh", Checkbox).value
        jupyter = self.query_one("#grant-jupyter", Checkbox).value
        self.grant(person, ssh, jupyter, ttl)

    @work(thread=True, group="grant")
    def grant(self, person: str, ssh: bool, jupyter: bool, ttl: str | None) -> None:
        try:
            granted = self.client.grant(self.workspace_name, person, ssh=ssh, jupyter=jupyter, ttl=ttl)
        except DevenvError as error:
            self._ui(self._grant_failed, error)
            return
        self._ui(self._granted, granted)

    def _granted(self, granted: dict[str, Any]) -> None:
        what = " and ".join(kind for kind in ("ssh", "jupyter") if granted.get(kind))
        left = f" for {countdown(granted['expires_at'] - time.time())}" if granted.get("expires_at") else ""
        self.app.notify(f"{granted['person']} may reach {self.workspace_name} by {what}{left}", markup=False)
        if self.is_attached:
            self.query_one("#grant-person", Input).value = ""
            self.query_one("#grant-ttl", Input).value = ""
            self._select = granted["person"]
            self.load()

    def _grant_failed(self, error: DevenvError) -> None:
        self._failed(error)
        field = next((name for name, start in FIELDS.items() if error.message.startswith(start)), None)
        if field and self.is_attached:
            self._field_errors(field, error.message)
            self.query_one(f"#grant-{field}", Input).focus()

    def _field_errors(self, field: str | None, message: str = "") -> None:
        """Show `message` under `field`, and no error under the others (field None: clear them all)."""
        for name in FIELDS:
            label = self.query_one(f"#grant-{name}-error", Label)
            label.update(message if name == field else "")
            label.display = name == field

    # -- revoking ----------------------------------------------------------------------------------

    def action_revoke(self) -> None:
        person = self.person_selected()
        if person is None:
            self.app.notify("no one selected", severity="warning")
            return
        if person == self.owner:
            self.app.notify(
                f"{person} owns {self.workspace_name}; an owner's access cannot be revoked "
                "(delete the workspace instead)",
                severity="warning",
                markup=False,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.revoke(person)

        question = (
            f"Revoke {person}'s access to {self.workspace_name}? "
            "Their SSH sessions and Jupyter connections there close now."
        )
        self.app.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="revoke")
    def revoke(self, person: str) -> None:
        try:
            self.client.revoke(self.workspace_name, person)
        except DevenvError as error:
            self._ui(self._failed, error)
        else:
            self._ui(self._revoked, person)

    def _revoked(self, person: str) -> None:
        self.app.notify(f"{person} no longer reaches {self.workspace_name}", markup=False)
        if self.is_attached:
            self.load()

    def action_close(self) -> None:
        self.dismiss(None)
