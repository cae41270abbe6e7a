"""SVG snapshots of the TUI's main screens at 80x24, dark and light (pytest-textual-snapshot).

The daemon is the served fake at a fixed socket path (the status line shows it), the clock is fixed and
the records' start times are set, so a screen renders the same on every run. After a deliberate change
of a screen, `pytest tests/unit/test_tui_snapshots.py --snapshot-update` rewrites them; look at the
report before committing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from textual.pilot import Pilot
from textual.widgets import DataTable

from devenv.client import Client
from devenv.daemon.store.tables import Workspace
from devenv.testing.daemon import FakeDaemon, project_upload
from devenv.testing.served import served_fake_daemon
from devenv.tui.app import DevenvApp
from devenv.tui.screens import ConfirmScreen, DetailsScreen
from harness.tui import until

SIZE = (80, 24)
FOLDER = Path("/tmp/devenv-tui-snapshots")  # fixed: the status line names the socket
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
SnapCompare = Callable[..., bool]


@pytest.fixture
def snapshot_daemon() -> Iterator[tuple[FakeDaemon, Client]]:
    shutil.rmtree(FOLDER, ignore_errors=True)
    with served_fake_daemon(FOLDER / "d") as (fake, client):
        specs = {"alpha": "", "trainer": "  gpu: A100:2\n", "notebook": ""}
        for name, gpu in specs.items():
            upload = project_upload(
                FOLDER / f"p-{name}",
                name=name,
                edit={"resources:\n": f"resources:\n{gpu}", "autostop: 30m": "autostop: off"},
            )
            assert list(client.up(upload, name=name))[-1]["workspace"]["state"] == "running"
        list(client.stop("notebook"))
        with fake.daemon.services.workspaces.sessions.begin() as session:
            session.execute(update(Workspace).values(started_at=NOW - 3720, last_active_at=NOW - 20))
            for name in specs:  # the real tag hashes devenv's Dockerfile: fixed here, or every image change shows
                session.execute(
                    update(Workspace)
                    .where(Workspace.name == name)
                    .values(image_tag=f"devenv/{name}:0123456789abcdef", image_hash="0123456789abcdef" * 4)
                )
            session.execute(update(Workspace).where(Workspace.name == "trainer").values(last_active_at=NOW - 600))
        yield fake, client
    shutil.rmtree(FOLDER, ignore_errors=True)


def dashboard(client: Client, theme: str = "textual-dark") -> DevenvApp:
    app = DevenvApp(client, poll_interval=60, clock=lambda: NOW)
    app.theme = theme
    return app


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, DevenvApp)
    await until(pilot, lambda: app.table.row_count == 3, "three rows")
    await settled(pilot)


async def settled(pilot: Pilot[Any]) -> None:
    """Let a refresh under way and any animation finish, so the screen is the same on every run.

    Textual 8.2's DataTable caches a row drawn between add_row and its idle width pass under the same
    key as after it, so a frame drawn in that window keeps header-wide cells until any cell changes
    (on the live dashboard, the next countdown tick; here, with a fixed clock, never): start clean.
    """
    await pilot.pause(0.3)
    for screen in pilot.app.screen_stack:
        for table in screen.query(DataTable):
            table._clear_caches()
            table.refresh()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
def test_dashboard(snap_compare: SnapCompare, snapshot_daemon: tuple[FakeDaemon, Client], theme: str) -> None:
    _fake, client = snapshot_daemon
    assert snap_compare(dashboard(client, theme), terminal_size=SIZE, run_before=loaded)


def test_delete_confirmation(snap_compare: SnapCompare, snapshot_daemon: tuple[FakeDaemon, Client]) -> None:
    _fake, client = snapshot_daemon

    async def ask(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the question")
        await settled(pilot)

    assert snap_compare(dashboard(client), terminal_size=SIZE, run_before=ask)


def test_details(snap_compare: SnapCompare, snapshot_daemon: tuple[FakeDaemon, Client]) -> None:
    _fake, client = snapshot_daemon

    async def details(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailsScreen), "the details")
        screen = pilot.app.screen
        await until(pilot, lambda: "loading" not in str(screen.query_one("#details-fields").render()), "loaded")
        await settled(pilot)

    assert snap_compare(dashboard(client), terminal_size=SIZE, run_before=details)


def test_launch_wizard(
    snap_compare: SnapCompare, snapshot_daemon: tuple[FakeDaemon, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Select

    from devenv.tui.launch import LaunchScreen

    _fake, client = snapshot_daemon
    monkeypatch.chdir(FOLDER / "p-trainer")  # "this folder" is the trainer project

    async def wizard(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen), "the wizard")
        engine = pilot.app.screen.query_one("#launch-engine", Select)
        await until(pilot, lambda: engine.value == "local", "the engines")
        await settled(pilot)

    assert snap_compare(dashboard(client), terminal_size=SIZE, run_before=wizard)


def test_grants(snap_compare: SnapCompare, snapshot_daemon: tuple[FakeDaemon, Client]) -> None:
    from devenv.tui.grants import GrantsScreen

    _fake, client = snapshot_daemon
    client.grant("alpha", "alice", ssh=True, jupyter=False)

    async def grants(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(pilot.app.screen, GrantsScreen), "the grants")
        table = pilot.app.screen.query_one("#grants")
        await until(pilot, lambda: getattr(table, "row_count", 0) == 2, "owner and alice")
        await settled(pilot)

    assert snap_compare(dashboard(client), terminal_size=SIZE, run_before=grants)
