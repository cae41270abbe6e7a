"""The Textual dashboard, driven by Pilot at 80x24 against a fake daemon served on a real unix socket."""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from devenv.client import Client
from devenv.errors import DaemonUnreachable, EngineUnreachable
from devenv.testing.daemon import FakeDaemon, project_upload
from devenv.testing.served import served_fake_daemon
from devenv.tui.app import DevenvApp
from devenv.tui.rows import countdown, up_time
from devenv.tui.screens import ConfirmScreen, DetailsScreen
from harness.tui import make_workspaces, messages, until

SIZE = (80, 24)
POLL = 0.2


def cell(app: DevenvApp, name: str, column: str) -> str:
    return str(app.table.get_cell(name, column))


def rows(app: DevenvApp) -> list[str]:
    return [str(key.value) for key in app.table.rows]


async def select(pilot: Pilot[None], app: DevenvApp, name: str) -> None:
    app.table.move_cursor(row=app.table.get_row_index(name), animate=False)
    await pilot.pause()
    assert app.selected() == name


def test_countdown_reads_like_a_timer() -> None:
    assert countdown(None) == "-"
    assert countdown(1798) == "29m58s"
    assert countdown(45) == "45s"
    assert countdown(3720) == "1h02m"


@pytest.mark.anyio
async def test_dashboard_lists_the_workspaces_at_80x24(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        assert rows(app) == ["alpha", "beta"]
        for name in ("alpha", "beta"):
            assert cell(app, name, "name") == name
            assert cell(app, name, "state") == "running"
            assert cell(app, name, "backend") == "local"
            assert cell(app, name, "up") not in ("", "-")
            assert cell(app, name, "gpu") == "-"
            assert cell(app, name, "image") == client.workspace(name)["image_hash"][:12]
        assert app.title == "devenv"
        assert "2 workspaces" in str(app.query_one("#status").render())
        assert app.size == SIZE and app.table.region.height >= 10  # room for rows at 80x24


@pytest.mark.anyio
async def test_stop_then_start_the_selected_workspace(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        await select(pilot, app, "beta")
        await pilot.press("x")
        await until(pilot, lambda: cell(app, "beta", "state") == "stopped", "beta stopped")
        assert client.workspace("beta")["state"] == "stopped"
        assert cell(app, "alpha", "state") == "running"
        assert app.selected() == "beta"  # the cursor stays on the workspace across refreshes
        await pilot.press("s")
        await until(pilot, lambda: cell(app, "beta", "state") == "running", "beta running again")
        assert client.workspace("beta")["state"] == "running"


@pytest.mark.anyio
async def test_delete_asks_first(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        await select(pilot, app, "alpha")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "Delete workspace alpha and its home volume?" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("n")
        await pilot.pause(3 * POLL)
        assert not isinstance(app.screen, ConfirmScreen)
        assert rows(app) == ["alpha", "beta"]
        assert client.workspace("alpha")["state"] == "running"

        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: rows(app) == ["beta"], "alpha's row to go")
        assert [item["name"] for item in client.workspaces()["items"]] == ["beta"]


@pytest.mark.anyio
async def test_enter_shows_details_and_events(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        await select(pilot, app, "beta")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details screen")
        screen = app.screen

        def shown(selector: str) -> str:
            return str(screen.query_one(selector).render())

        await until(pilot, lambda: "loading" not in shown("#details-events"), "the details to load")
        assert "beta" in shown("#details-title")
        fields = shown("#details-fields")
        assert "state" in fields and "running" in fields and client.workspace("beta")["image_hash"] in fields
        events = client.events("beta", limit=20)
        assert events and events[-1]["message"] in shown("#details-events")
        project = client.project("beta")
        assert len(project["lock_hash"]) == 64 and project["lock_hash"] in fields  # what pins the image
        assert project["base_digest"] in fields
        assert "name: beta" in shown("#details-spec") and "devenv.yaml" in shown("#details-spec-title")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DetailsScreen), "the details to close")


@pytest.mark.anyio
async def test_c_copies_the_ssh_command(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        await select(pilot, app, "beta")
        await pilot.press("c")
        assert app.clipboard == "devenv ssh beta"
        await until(pilot, lambda: any("devenv ssh beta" in text for text in messages(app)), "a notification")


@pytest.mark.anyio
async def test_a_failed_stop_is_a_notification_not_a_crash(served: tuple[FakeDaemon, Client]) -> None:
    fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        fake.backend.fail_next("stop", EngineUnreachable("engine x does not answer", hint="start it"))
        await pilot.press("x")
        await until(pilot, lambda: any("does not answer" in text for text in messages(app)), "the error")
        error = next(n for n in app._notifications if "does not answer" in n.message)
        assert error.severity == "error" and "hint: start it" in error.message
        assert app.is_running
        await pilot.press("r")
        await until(pilot, lambda: len(rows(app)) == 2, "the table to stay")


@pytest.mark.anyio
async def test_the_daemon_going_away_is_shown_and_polled_again(folder: Path) -> None:
    with ExitStack() as stack:
        _fake, client = stack.enter_context(served_fake_daemon(folder / "d"))
        make_workspaces(client, folder, "alpha")
        app = DevenvApp(client, poll_interval=POLL)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: rows(app) == ["alpha"], "one row")
            stack.close()  # the daemon stops
            await until(pilot, lambda: app.reachable is False, "the outage to be noticed")
            assert app.is_running
            assert "unreachable" in str(app.query_one("#status").render())
            # notify() posts a message: the notice is on record a moment after the state it tells of
            await until(pilot, lambda: any("unreachable" in text for text in messages(app)), "the notice")
            await pilot.press("r")
            await pilot.pause(3 * POLL)
            assert app.is_running and app.reachable is False
            assert rows(app) == ["alpha"]  # the last known list stays on screen
            shutil.rmtree(folder / "d")
            with served_fake_daemon(folder / "d"):  # a fresh daemon on the same socket: polling finds it
                await until(pilot, lambda: app.reachable is True, "the daemon to be seen again")
                await until(pilot, lambda: rows(app) == [], "its (empty) list")
                assert "unreachable" not in str(app.query_one("#status").render())
                assert any("answers again" in text for text in messages(app))


@pytest.mark.anyio
async def test_changes_made_elsewhere_show_at_once_through_events(served: tuple[FakeDaemon, Client]) -> None:
    """With polling slowed to a minute, only the daemon's pushed events can bring the change in time."""
    _fake, client = served
    app = DevenvApp(client, poll_interval=60)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        await pilot.pause(0.3)  # the event stream is open
        list(client.stop("alpha"))  # another person, another terminal
        await until(pilot, lambda: cell(app, "alpha", "state") == "stopped", "alpha stopped, pushed", timeout=3)
        assert cell(app, "alpha", "up") == "-"
        assert cell(app, "beta", "state") == "running"


@pytest.mark.anyio
async def test_gpu_and_uptime_columns(folder: Path) -> None:
    with served_fake_daemon(folder / "d") as (_fake, client):
        upload = project_upload(folder / "p", name="trainer", edit={"resources:\n": "resources:\n  gpu: A100:2\n"})
        assert list(client.up(upload, name="trainer"))[-1]["workspace"]["state"] == "running"
        app = DevenvApp(client, poll_interval=POLL)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: rows(app) == ["trainer"], "the row")
            assert cell(app, "trainer", "gpu") == "A100:2"
            assert cell(app, "trainer", "up").endswith("s")  # seconds old


def test_uptime_turns_into_idle_time_after_a_minute() -> None:
    now = 10_000.0
    assert up_time({"started_at": None}, now) == "-"
    assert up_time({"started_at": now - 3720, "last_active_at": now - 5}, now) == "1h02m"
    assert up_time({"started_at": now - 3720, "last_active_at": now - 300}, now) == "idle 5m00s"


@pytest.mark.anyio
async def test_ssh_in_a_terminal_that_cannot_be_handed_over_says_what_to_run(served: tuple[FakeDaemon, Client]) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:  # headless: nothing to suspend
        await until(pilot, lambda: len(rows(app)) == 2, "two rows")
        await select(pilot, app, "beta")
        await pilot.press("t")
        await until(pilot, lambda: any("devenv ssh beta" in text for text in messages(app)), "the advice")
        assert app.is_running


def test_bare_devenv_on_a_terminal_opens_the_dashboard(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devenv import entry
    from devenv.tui import app as tui_app

    ran: list[Client | None] = []
    monkeypatch.setenv("DEVENV_HOST", "tcp://127.0.0.1:1")  # the early list fetch: refused, no daemon autostarted
    monkeypatch.setattr(tui_app, "run", lambda client=None, first=None: ran.append(client))
    monkeypatch.setattr(entry.sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(entry.sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(entry.sys, "argv", ["devenv"])
    entry.main()
    assert len(ran) == 1 and ran[0] is not None and ran[0].target.port == 1
    probe = "import sys, devenv.entry, devenv.tui; print('click' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "False"  # the dashboard's start skips click and the command tree
    monkeypatch.setattr(entry.sys.stdout, "isatty", lambda: False)  # piped: the help, as before
    ran.clear()
    with pytest.raises(SystemExit):
        entry.main()
    assert ran == [] and "Usage: devenv" in capsys.readouterr().err


def test_fields_the_form_leaves_as_they_are_keep_the_persons_spec_text(tmp_path: Path) -> None:
    """Line numbers in a spec error must be the person's own: an unchanged spec is sent byte for byte."""
    from devenv.upload import collect_project, spec_fields, with_fields

    upload = project_upload(tmp_path / "p", name="same")
    fields = spec_fields(upload)
    resources = fields["resources"]
    same = with_fields(
        upload,
        name=fields["name"],
        gpu=None,
        cpu=resources["cpu"],
        memory=resources["memory"],
        autostop=fields["autostop"],
    )
    assert same == upload
    changed = with_fields(upload, gpu="A100:1", autostop=None)
    assert spec_fields(changed)["resources"]["gpu"] == "A100:1" and "autostop" not in spec_fields(changed)
    assert collect_project(tmp_path / "p" / "devenv.yaml")["files"] == upload["files"]  # the folder is never written


@pytest.mark.anyio
async def test_the_list_asked_for_before_textual_loaded_is_the_first_shown(served: tuple[FakeDaemon, Client]) -> None:
    """`devenv tui` asks for the list while Textual imports; the dashboard starts from that answer."""
    from concurrent.futures import Future

    _fake, client = served
    first: Future[dict[str, Any]] = Future()
    answer = client.workspaces(limit=1000)
    answer["items"] = answer["items"][:1]  # what the daemon said a moment ago: only alpha
    first.set_result(answer)
    app = DevenvApp(client, poll_interval=60, first=first)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: rows(app) == ["alpha"], "the prefetched list")
        await pilot.press("r")  # the next poll asks the daemon
        await until(pilot, lambda: rows(app) == ["alpha", "beta"], "the daemon's own list")

    failed: Future[dict[str, Any]] = Future()
    failed.set_exception(DaemonUnreachable("the devenv daemon at unix:///x does not answer"))
    app = DevenvApp(client, poll_interval=60, first=failed)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.reachable is False, "the failed first answer shown")
        await pilot.press("r")
        await until(pilot, lambda: rows(app) == ["alpha", "beta"], "the list once the daemon answers")
