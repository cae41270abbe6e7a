"""The logs and grants screens of the TUI, driven by Pilot at 80x24 against a fake daemon on a real unix socket."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Label, Log

from devenv.client import Client, Target
from devenv.daemon.api.app import create_app
from devenv.testing.daemon import FakeDaemon
from devenv.testing.fake_backend import FakeBackend
from devenv.tui.app import DevenvApp
from devenv.tui.grants import GrantsScreen
from devenv.tui.logs import END, LineSplitter, LogsScreen
from devenv.tui.screens import ConfirmScreen
from harness.tui import messages, until

SIZE = (80, 24)
POLL = 0.2
SSHD_LINE = "Server listening on 0.0.0.0 port 22."  # what the fake container logged when it started


class FollowedLogs:
    """FakeBackend.logs ignores `follow`: this stand-in answers its lines, then what `push` adds, until `finish`.

    `opened` and `closed` count the daemon's streams, so a test sees the daemon let go of one.
    """

    def __init__(self, backend: FakeBackend) -> None:
        self.original = backend.logs
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.opened = 0
        self.closed = 0
        backend.logs = self.logs  # type: ignore[method-assign]

    def logs(self, handle: Any, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        first = self.original(handle, follow=False, tail=tail)  # raises as the fake does, before any byte

        def stream() -> Iterator[bytes]:
            self.opened += 1
            try:
                yield from first
                while follow:
                    chunk = self.inbox.get()
                    if chunk is None:
                        return
                    yield chunk
            finally:
                self.closed += 1

        return stream()

    def push(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.inbox.put(chunk)

    def finish(self) -> None:
        """End every stream still open (each takes one None), so the daemon can stop."""
        for _ in range(self.opened - self.closed + 1):
            self.inbox.put(None)


@pytest.fixture
def followed(served: tuple[FakeDaemon, Client]) -> Iterator[FollowedLogs]:
    logs = FollowedLogs(served[0].backend)
    yield logs
    logs.finish()


@contextmanager
def served_with_token(fake: FakeDaemon, folder: Path, person: str) -> Iterator[Client]:
    """The same daemon on a second socket where callers are who their token says (`person`), not the admin."""
    path = folder / "t.sock"
    app = create_app(fake.daemon.services, socket_path=str(folder / "elsewhere.sock"))
    # quick to stop: a follow stream's handler notices its client gone only at its next heartbeat (10 s)
    server = uvicorn.Server(
        uvicorn.Config(app, uds=str(path), log_level="critical", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the second server did not start"
            time.sleep(0.02)
        yield Client(Target(socket=str(path), token=fake.daemon.services.tokens.create(person)), autostart=False)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def open_screen(pilot: Pilot[None], app: DevenvApp, name: str, key: str, screen: type) -> Any:
    """Select `name` on the dashboard, press `key`, and wait for `screen` to be on top."""
    await until(pilot, lambda: name in [str(row.value) for row in app.table.rows], f"{name}'s row")
    app.table.move_cursor(row=app.table.get_row_index(name), animate=False)
    await pilot.pause()
    assert app.selected() == name
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, screen), screen.__name__)
    return app.screen


def readers(name: str) -> list[threading.Thread]:
    """The logs screen's reader threads for workspace `name` still alive."""
    return [thread for thread in threading.enumerate() if thread.name == f"logs of {name}"]


def lines(screen: LogsScreen) -> list[str]:
    return list(screen.query_one("#logs", Log).lines)


def shown(widget: Any) -> str:
    return str(widget.render())


# -- logs ------------------------------------------------------------------------------------------


def test_lines_split_across_chunks_come_out_whole() -> None:
    splitter = LineSplitter()
    accent = "é".encode()
    assert splitter.feed(b"first half of a li") == []
    assert splitter.feed(b"ne\r\nsecond\n\ncaf" + accent[:1]) == ["first half of a line", "second", ""]
    assert splitter.feed(accent[1:] + b" \x1b[32mgreen\x1b[0m\nno newline at the end") == ["café green"]
    assert splitter.feed(b"", final=True) == ["no newline at the end"]
    assert splitter.feed(b"\xff\n") == ["\ufffd"]


@pytest.mark.anyio
async def test_logs_show_history_then_follow(served: tuple[FakeDaemon, Client], followed: FollowedLogs) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app, "beta", "l", LogsScreen)
        assert "logs of beta" in shown(screen.query_one("#logs-title"))
        await until(pilot, lambda: lines(screen) == [SSHD_LINE], "the existing line")
        assert "following" in shown(screen.query_one("#logs-status"))

        followed.push(b"first half of a li", b"ne\nsecond\n", "caf\u00e9".encode()[:-1])
        followed.push("caf\u00e9".encode()[-1:] + b"\n")
        await until(pilot, lambda: len(lines(screen)) == 4, "the lines added while following")
        assert lines(screen)[1:] == ["first half of a line", "second", "caf\u00e9"]

        batches: list[int] = []
        append = screen._append
        screen._append = lambda new: (batches.append(len(new)), append(new))  # type: ignore[method-assign]
        followed.push(*(f"fast line {number}\n".encode() for number in range(2000)))
        await until(pilot, lambda: len(lines(screen)) == 2004, "a burst of 2000 lines")
        assert lines(screen)[-1] == "fast line 1999"
        assert sum(batches) == 2000 and len(batches) < 100, batches  # handed over in batches, not line by line
        pane = screen.query_one("#logs", Log)
        assert pane.is_vertical_scroll_end  # following: the newest line is in view

        await pilot.press("f")
        assert pane.auto_scroll is False and "f: follow again" in shown(screen.query_one("#logs-status"))
        await pilot.press("f")
        assert pane.auto_scroll is True

        followed.finish()  # the container stopped: the stream ends
        await until(pilot, lambda: lines(screen)[-1] == END, "the end of the logs")
        assert END in shown(screen.query_one("#logs-status"))
        assert not any("error" in text for text in messages(app))
        await pilot.press("q")
        await until(pilot, lambda: not isinstance(app.screen, LogsScreen), "the logs to close")
        assert app.is_running


@pytest.mark.anyio
async def test_closing_the_logs_ends_the_stream(served: tuple[FakeDaemon, Client], followed: FollowedLogs) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app, "alpha", "l", LogsScreen)
        await until(pilot, lambda: lines(screen) == [SSHD_LINE], "the existing line")
        worker = screen.follower
        assert worker is not None and worker.is_running and followed.opened == 1 and followed.closed == 0
        assert len(readers("alpha")) == 1
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LogsScreen), "the logs to close")
        await until(pilot, lambda: worker.is_finished, "the worker to finish on a quiet stream", timeout=2)
        await until(pilot, lambda: not readers("alpha"), "the reader blocked on the socket to wake", timeout=2)

        def daemon_let_go() -> bool:
            followed.push(b"still talking\n")  # the daemon notices a gone client when it next writes
            return followed.closed == 1

        await until(pilot, daemon_let_go, "the daemon to see the connection closed")
        assert followed.opened == 1 and app.is_running


@pytest.mark.anyio
async def test_logs_of_a_workspace_deleted_meanwhile_are_an_error_not_a_crash(
    served: tuple[FakeDaemon, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake, client = served
    asked = client.logs

    def deleted_first(name: str, **options: Any) -> Any:
        """Between the key press and the request, someone deletes the workspace."""
        assert "deleted" in list(Client(client.target, autostart=False).remove(name))[-1]
        return asked(name, **options)

    monkeypatch.setattr(client, "logs", deleted_first)
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app, "beta", "l", LogsScreen)
        await until(pilot, lambda: any("no workspace named 'beta'" in text for text in messages(app)), "the error")
        error = next(note for note in app._notifications if "no workspace named" in note.message)
        assert error.severity == "error" and "hint:" in error.message
        await until(pilot, lambda: bool(lines(screen)) and lines(screen)[-1].startswith("error:"), "an error line")
        assert "no workspace named" in shown(screen.query_one("#logs-status"))
        await until(pilot, lambda: screen.follower is not None and screen.follower.is_finished, "the worker to end")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LogsScreen), "the logs to close")
        await until(pilot, lambda: app.table.row_count == 1, "beta's row to go")
        assert app.is_running


# -- grants ----------------------------------------------------------------------------------------


def persons(screen: GrantsScreen) -> list[str]:
    return [str(row.value) for row in screen.table.rows]


def cell(screen: GrantsScreen, person: str, column: str) -> str:
    value = screen.table.get_cell(person, column)
    return value.plain if isinstance(value, Text) else str(value)


def granted(client: Client, workspace: str) -> dict[str, dict[str, Any]]:
    return {item["person"]: item for item in client.access(workspace)["grants"]}


async def type_into(pilot: Pilot[None], screen: GrantsScreen, selector: str, text: str) -> None:
    await pilot.click(selector)
    assert screen.focused is screen.query_one(selector)
    await pilot.press(*text)


@pytest.mark.anyio
async def test_grant_with_a_ttl_then_revoke(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    owner = client.access("beta")["owner"]
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app, "beta", "g", GrantsScreen)
        await until(pilot, lambda: persons(screen) == [owner], "the owner's row")
        assert cell(screen, owner, "granted_by") == "(owner)" and cell(screen, owner, "ssh") == "yes"

        await pilot.press("r")  # the cursor is on the owner
        await until(pilot, lambda: any("cannot be revoked" in text for text in messages(app)), "the refusal")
        assert isinstance(app.screen, GrantsScreen)

        await type_into(pilot, screen, "#grant-person", "alice")
        await type_into(pilot, screen, "#grant-ttl", "1h")
        await pilot.click("#grant-jupyter")  # SSH only
        assert screen.query_one("#grant-jupyter", Checkbox).value is False
        await pilot.click("#grant-go")
        await until(pilot, lambda: "alice" in persons(screen), "alice's row")
        assert cell(screen, "alice", "ssh") == "yes" and cell(screen, "alice", "jupyter") == "no"
        assert cell(screen, "alice", "expires") in ("59m59s", "59m58s", "1h00m")
        assert cell(screen, "alice", "granted_by") == owner
        alice = granted(client, "beta")["alice"]
        assert alice["ssh"] and not alice["jupyter"] and 3500 < alice["expires_at"] - time.time() <= 3600
        assert screen.query_one("#grant-person", Input).value == ""  # the form is ready for the next one
        assert screen.person_selected() == "alice"

        await pilot.press("escape")  # from the (focused) person field: closes the screen too
        await until(pilot, lambda: not isinstance(app.screen, GrantsScreen), "the grants to close")
        screen = await open_screen(pilot, app, "beta", "g", GrantsScreen)
        await until(pilot, lambda: persons(screen) == [owner, "alice"], "both rows")
        screen.table.move_cursor(row=1, animate=False)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "Revoke alice's access to beta?" in shown(app.screen.query_one("#confirm-question"))
        await pilot.press("n")
        await pilot.pause(0.3)
        assert "alice" in granted(client, "beta") and "alice" in persons(screen)
        await pilot.click("#grant-revoke")  # the mouse way
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: persons(screen) == [owner], "alice's row to go")
        assert granted(client, "beta") == {}


@pytest.mark.anyio
async def test_the_keyboard_alone_grants(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app, "alpha", "g", GrantsScreen)
        await until(pilot, lambda: len(persons(screen)) == 1, "the owner's row")
        await pilot.press("tab", "tab")  # table -> revoke button -> person
        assert screen.focused is screen.query_one("#grant-person")
        await pilot.press(*"bob", "enter")
        await until(pilot, lambda: "bob" in persons(screen), "bob's row")
        bob = granted(client, "alpha")["bob"]
        assert bob["ssh"] and bob["jupyter"] and bob["expires_at"] is None
        assert cell(screen, "bob", "expires") == "-"


@pytest.mark.anyio
async def test_bad_names_and_ttls_are_shown_under_their_field(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app, "beta", "g", GrantsScreen)
        await until(pilot, lambda: len(persons(screen)) == 1, "the owner's row")
        person_error = screen.query_one("#grant-person-error", Label)
        ttl_error = screen.query_one("#grant-ttl-error", Label)
        assert not person_error.display and not ttl_error.display

        await type_into(pilot, screen, "#grant-person", "Alice Smith")
        await pilot.press("enter")
        await until(pilot, lambda: person_error.display, "the person's error")
        assert "letters, digits" in shown(person_error) and not ttl_error.display
        assert person_error.region.height >= 1 and person_error.region.bottom <= SIZE[1]  # on screen at 80x24
        assert any("'Alice Smith'" in text for text in messages(app))

        screen.query_one("#grant-person", Input).value = "ali\nce"  # a pasted newline cannot be typed
        await pilot.click("#grant-go")
        await until(pilot, lambda: "'ali\\nce'" in shown(person_error), "the newline refused")

        screen.query_one("#grant-person", Input).value = "alice"
        await type_into(pilot, screen, "#grant-ttl", "soon")
        await pilot.press("enter")
        await until(pilot, lambda: ttl_error.display, "the ttl's error")
        assert "'soon'" in shown(ttl_error) and "like 90s, 30m, 4h or 2d" in shown(ttl_error)
        assert not person_error.display  # cleared when the person was not the problem
        assert ttl_error.region.bottom <= SIZE[1] - 1

        assert granted(client, "beta") == {} and persons(screen) == [client.access("beta")["owner"]]


@pytest.mark.anyio
async def test_someone_not_the_owner_is_refused(served: tuple[FakeDaemon, Client], folder: Path) -> None:
    fake, admin = served
    admin.grant("beta", "carol", ssh=True, jupyter=False)  # carol may see who has access, not change it
    with served_with_token(fake, folder, "carol") as client:
        assert client.whoami() == "carol"
        app = DevenvApp(client, poll_interval=POLL)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, app, "beta", "g", GrantsScreen)
            await until(pilot, lambda: "carol" in persons(screen), "the grants")
            await type_into(pilot, screen, "#grant-person", "mallory")
            await pilot.press("enter")
            await until(pilot, lambda: any("or an admin can do this" in text for text in messages(app)), "the refusal")
            error = next(note for note in app._notifications if "or an admin" in note.message)
            assert error.severity == "error" and "hint:" in error.message
            assert not screen.query_one("#grant-person-error", Label).display  # not about the field

            screen.table.move_cursor(row=screen.table.get_row_index("carol"), animate=False)
            await pilot.press("shift+tab", "shift+tab")  # person field -> revoke button -> table
            assert screen.focused is screen.table
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: len([t for t in messages(app) if "or an admin" in t]) == 2, "refused again")
            assert set(granted(admin, "beta")) == {"carol"}
            assert app.is_running

            await pilot.press("escape")
            # no grant on alpha: carol's dashboard does not even list it
            assert [str(row.value) for row in app.table.rows] == ["beta"]


def test_details_show_the_setup_steps_one_line_each() -> None:
    from devenv.tui.screens import fields_text

    setup = {
        "secrets": {"delivered": ["A"], "missing": ["GIT_TOKEN"]},
        "repo": {"status": "failed", "message": "could not clone http://x/p.git"},
        "repo_facts": {"commit": "6386a4903986491ffed9", "branch": "main", "dirty": True},
    }
    text = fields_text({"name": "w", "setup": setup}).plain
    assert "secrets  1 delivered, MISSING GIT_TOKEN" in text
    assert "repo     could not clone http://x/p.git" in text
    assert "commit   6386a4903986 on main (dirty)" in text
    assert "{" not in text  # no raw JSON
