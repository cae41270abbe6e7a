"""The launch wizard, driven by Pilot at 80x24 against a fake daemon served on a real unix socket.

The project folder has a fake devenv.lock (as `project_upload` writes it), so the daemon never resolves pins;
a gate on the fake backend's build holds a launch open to watch its progress while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Log, Select, Static

from devenv.backends.base import Handle
from devenv.client import Client, Target
from devenv.daemon.services.backends import BackendEntry
from devenv.errors import BackendError, DevenvError, UsageError
from devenv.progress import ProgressEvent
from devenv.testing.daemon import FakeDaemon, project_upload
from devenv.tui.app import DevenvApp
from devenv.tui.launch import FOLDER, LaunchScreen, message_field
from devenv.upload import template_names
from harness import tui
from harness.tui import messages

SIZE = (80, 24)
POLL = 0.2
FIELDS = ("template", "name", "engine", "gpu", "cpu", "memory", "autostop")
PATIENCE = 15.0  # seconds: a loaded machine (a build job beside the tests) makes each frame slow


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    await tui.until(pilot, condition, what, timeout=PATIENCE)


@pytest.fixture
def proj(folder: Path) -> Path:
    """A project folder (minimal template, named proj) with devenv.yaml and a fake devenv.lock."""
    project_upload(folder / "proj", name="proj")
    return folder / "proj"


@pytest.fixture
def gate(served: tuple[FakeDaemon, Client]) -> Iterator[threading.Event]:
    """Hold every build until set; the build reports one progress line first, as a real one would."""
    fake, _client = served
    event = threading.Event()
    build = fake.backend.build

    def gated(project: Any, progress: Any = None) -> Any:
        if progress is not None:
            progress(ProgressEvent("phase", "building layer 1 of 3"))
        event.wait(20)
        return build(project, progress)

    fake.backend.build = gated  # type: ignore[method-assign]
    yield event
    event.set()  # never leave the daemon's worker waiting


def names(client: Client) -> list[str]:
    return [item["name"] for item in client.workspaces()["items"]]


def value(screen: LaunchScreen, field: str) -> Any:
    """The field's value; None until the screen has composed."""
    found = screen.query(f"#launch-{field}")
    return found.first().value if found else None  # type: ignore[attr-defined]


def error(screen: LaunchScreen, field: str) -> str:
    label = screen.query_one(f"#launch-{field}-error", Static)
    return str(label.render()) if label.display else ""


def progress(screen: LaunchScreen) -> list[str]:
    return list(screen.query_one("#launch-progress", Log).lines)


async def open_wizard(pilot: Pilot[None], app: DevenvApp, client: Client, proj: Path | None) -> LaunchScreen:
    """The wizard over the dashboard, its engines loaded and its fields filled."""
    screen = LaunchScreen(client, folder=proj)
    app.push_screen(screen)
    await until(
        pilot, lambda: app.screen is screen and value(screen, "engine") not in (None, Select.NULL), "the wizard"
    )
    await until(pilot, lambda: value(screen, "name") not in (None, "") and bool(screen.backends), "the fields to fill")
    return screen


async def type_into(pilot: Pilot[None], screen: LaunchScreen, field: str, text: str) -> None:
    """Replace a field's text by keys: focus it, clear it, type."""
    widget = screen.query_one(f"#launch-{field}", Input)
    widget.focus()
    await pilot.pause()
    widget.action_select_all()
    await pilot.press("backspace", *text)


async def fill(pilot: Pilot[None], screen: LaunchScreen, **values: str) -> None:
    """Set fields' text at once (the keyboard is tested elsewhere; a key costs a frame)."""
    for field, text in values.items():
        screen.query_one(f"#launch-{field}", Input).value = text
    await pilot.pause()


def test_errors_that_are_not_spec_issues_land_at_their_field_when_recognisable() -> None:
    name = UsageError("workspace name 'Bad Name': use lowercase letters, digits and dashes (at most 63)")
    assert message_field(name) == "name"
    assert message_field(UsageError("no backend named 'x' (known: local)")) == "engine"
    assert message_field(DevenvError("backend 'gpu' (docker) cannot be used: no SDK")) == "engine"
    assert message_field(UsageError("workspace w runs on backend local, the spec says gpu")) == "engine"
    assert message_field(BackendError("the engine refused")) is None


@pytest.mark.anyio
async def test_the_form_offers_this_folder_then_the_templates_and_fills_from_the_spec(
    served: tuple[FakeDaemon, Client], proj: Path
) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        template = screen.query_one("#launch-template", Select)
        options = template._options  # (label, value) as shown
        assert [option_value for _, option_value in options] == [FOLDER, *template_names()]
        assert str(options[0][0]) == f"this folder ({proj / 'devenv.yaml'})"
        assert template.value == FOLDER and app.focused is template
        assert {field: value(screen, field) for field in FIELDS[1:]} == {
            "name": "proj",
            "engine": "local",
            "gpu": "",
            "cpu": "2",
            "memory": "4Gi",
            "autostop": "30m",
        }
        assert not any(error(screen, field) for field in FIELDS)

        template.value = "pytorch"  # a shipped template's own values replace this folder's
        await until(pilot, lambda: value(screen, "name") == "pytorch", "pytorch's fields")
        assert {field: value(screen, field) for field in ("gpu", "cpu", "memory", "autostop")} == {
            "gpu": "A100:1",
            "cpu": "8",
            "memory": "32Gi",
            "autostop": "2h",
        }

        # everything on screen at 80x24, in Tab order, the form above the buttons and the progress log
        chain = [widget.id for widget in screen.focus_chain]
        assert chain[:9] == [f"launch-{field}" for field in FIELDS] + ["launch-go", "launch-cancel"]
        assert "launch-progress" in chain[9:]
        for widget_id in [*chain[:9], "launch-progress"]:
            region = screen.query_one(f"#{widget_id}").region
            assert region.height >= 1 and region.bottom <= SIZE[1] and region.right <= SIZE[0], widget_id


@pytest.mark.anyio
async def test_without_a_devenv_yaml_here_the_first_template_is_chosen(
    served: tuple[FakeDaemon, Client], folder: Path
) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, folder)
        template = screen.query_one("#launch-template", Select)
        assert [option_value for _, option_value in template._options] == template_names()
        assert template.value == template_names()[0] and value(screen, "name") == template_names()[0]


@pytest.mark.anyio
async def test_launch_from_this_folder_with_keys_only(
    served: tuple[FakeDaemon, Client], proj: Path, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake, client = served
    monkeypatch.chdir(proj)  # the dashboard's `n` opens the wizard on the current folder
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(app.table.rows) == 2, "the dashboard's rows")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen), "the wizard")
        screen = app.screen
        assert isinstance(screen, LaunchScreen)
        await until(
            pilot, lambda: value(screen, "engine") == "local" and value(screen, "name") == "proj", "the defaults"
        )
        log = screen.query_one("#launch-progress", Log)
        seen: list[str] = []  # every line written, readable after the screen (and its log) has gone
        write_line = log.write_line
        log.write_line = lambda line, *args, **kwargs: seen.append(line) or write_line(line, *args, **kwargs)  # type: ignore[method-assign]
        await pilot.press("tab")  # template -> name; its text is selected on focus, typing replaces it
        assert app.focused is screen.query_one("#launch-name")
        await pilot.press(*"fresh", "ctrl+s")

        await until(pilot, lambda: "progress: building layer 1 of 3" in progress(screen), "progress while it builds")
        assert any(line.startswith("state: ") and "building" in line for line in progress(screen))
        assert app.screen is screen and screen.query_one("#launch-go", Button).disabled
        assert client.workspace("fresh")["state"] == "building"

        gate.set()
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), "the wizard to close")
        assert "state: starting -> running" in seen and seen.index("launching fresh...") < len(seen) - 1
        assert client.workspace("fresh")["state"] == "running"
        await until(pilot, lambda: "fresh is running" in messages(app), "the notice")
        await until(pilot, lambda: "fresh" in app.table.rows, "its row on the dashboard")
        await until(pilot, lambda: app.selected() == "fresh", "the cursor on the new workspace")
        assert "proj" not in names(client)


@pytest.mark.anyio
async def test_bad_resources_show_at_their_fields_and_create_nothing(
    served: tuple[FakeDaemon, Client], proj: Path
) -> None:
    fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        await type_into(pilot, screen, "gpu", "A100:zero")
        await fill(pilot, screen, memory="lots")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: error(screen, "gpu") != "", "the gpu error")
        assert "GPU count must be a whole number" in error(screen, "gpu")
        assert "'lots' is not a size" in error(screen, "memory")
        assert not any(error(screen, field) for field in ("template", "name", "engine", "cpu", "autostop"))
        assert app.focused is screen.query_one("#launch-gpu")  # the first field in trouble
        assert app.screen is screen and not screen.query_one("#launch-go", Button).disabled
        assert names(client) == ["alpha", "beta"]

        await type_into(pilot, screen, "gpu", "2")  # fixing a field clears its message
        assert error(screen, "gpu") == "" and error(screen, "memory") != ""

        # a shipped template (no lock): the daemon checks the spec before resolving any pins
        screen.query_one("#launch-template", Select).value = "pytorch"
        await until(pilot, lambda: value(screen, "gpu") == "A100:1", "pytorch's fields")
        await fill(pilot, screen, cpu="many", autostop="soon")
        screen.query_one("#launch-autostop", Input).focus()
        await pilot.press("enter")  # enter in the last field launches
        await until(pilot, lambda: error(screen, "autostop") != "", "the autostop error")
        assert "'soon' is not a duration" in error(screen, "autostop") and 'write "off"' in error(screen, "autostop")
        assert "expected a number" in error(screen, "cpu")
        assert app.focused is screen.query_one("#launch-cpu")
        assert names(client) == ["alpha", "beta"] and fake.backend.locked == []


@pytest.mark.anyio
async def test_a_bad_name_shows_at_the_name(served: tuple[FakeDaemon, Client], proj: Path) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        await type_into(pilot, screen, "name", "Bad Name")
        await pilot.click("#launch-go")  # the mouse works too
        await until(pilot, lambda: error(screen, "name") != "", "the name error")
        assert "'Bad Name' is not a valid name" in error(screen, "name") and "bad-name" in error(screen, "name")
        assert app.focused is screen.query_one("#launch-name")
        assert names(client) == ["alpha", "beta"] and app.is_running


@pytest.mark.anyio
async def test_an_unusable_engine_is_an_inline_error_and_launches_nothing(
    served: tuple[FakeDaemon, Client], proj: Path
) -> None:
    fake, client = served
    entries = fake.daemon.services.workspaces.backends.entries
    entries["gpu-box"] = BackendEntry("gpu-box", "docker", "ssh://gpu-box", None, "the docker SDK is not installed")
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        engine = screen.query_one("#launch-engine", Select)
        assert [option_value for _, option_value in engine._options] == [Select.NULL, "local", "gpu-box"]
        assert "unusable: the docker SDK is not installed" in str(engine._options[2][0])
        engine.focus()
        await pilot.press("enter", "down", "enter")  # pick gpu-box from the list
        await until(pilot, lambda: engine.value == "gpu-box", "gpu-box chosen")
        assert "gpu-box cannot be used: the docker SDK is not installed" in error(screen, "engine")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert "cannot be used" in error(screen, "engine") and app.focused is engine
        assert names(client) == ["alpha", "beta"]


@pytest.mark.anyio
async def test_an_engine_the_daemon_does_not_know_is_refused_at_the_engine(
    served: tuple[FakeDaemon, Client], folder: Path
) -> None:
    _fake, client = served
    project_upload(folder / "elsewhere", name="elsewhere", edit={"name: elsewhere": "name: elsewhere\nbackend: nope"})
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, folder / "elsewhere")
        assert value(screen, "engine") == "nope"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: error(screen, "engine") != "", "the engine error")
        assert "no backend named 'nope' (known: local)" in error(screen, "engine")
        assert names(client) == ["alpha", "beta"] and app.screen is screen


@pytest.mark.anyio
async def test_escape_cancels_and_creates_nothing(served: tuple[FakeDaemon, Client], proj: Path) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    results: list[str | None] = []
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(app.table.rows) == 2, "the dashboard's rows")
        screen = LaunchScreen(client, folder=proj)
        app.push_screen(screen, results.append)
        await until(pilot, lambda: value(screen, "name") == "proj", "the wizard")
        await type_into(pilot, screen, "name", "never")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), "the wizard to close")
        assert results == [None]
        await pilot.pause(3 * POLL)
        assert names(client) == ["alpha", "beta"] and list(app.table.rows) == ["alpha", "beta"]


@pytest.mark.anyio
async def test_escape_during_a_launch_leaves_it_to_the_daemon(
    served: tuple[FakeDaemon, Client], proj: Path, gate: threading.Event
) -> None:
    _fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    results: list[str | None] = []
    async with app.run_test(size=SIZE) as pilot:
        screen = LaunchScreen(client, folder=proj)
        app.push_screen(screen, results.append)
        await until(pilot, lambda: value(screen, "engine") == "local", "the wizard")
        await fill(pilot, screen, name="later")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("building" in line for line in progress(screen)), "the build to begin")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), "the wizard to close")
        assert results == [None]
        await until(pilot, lambda: any("later goes on launching" in text for text in messages(app)), "the notice")
        gate.set()
        await until(pilot, lambda: client.workspace("later")["state"] == "running", "the daemon to finish it")
        await until(pilot, lambda: "later" in app.table.rows, "its row on the dashboard")
        assert app.is_running


@pytest.mark.anyio
async def test_resources_reach_the_daemon_and_the_engine(served: tuple[FakeDaemon, Client], proj: Path) -> None:
    fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        await fill(pilot, screen, name="gpus", gpu="2", cpu="1.5", memory="2Gi", autostop="off")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), "the wizard to close")
        workspace = client.workspace("gpus")
        assert workspace["state"] == "running" and workspace["gpu"] == "2"
        assert workspace["autostop_seconds"] is None
        request = fake.backend._containers[Handle.for_workspace("gpus").container].request
        assert (request.gpu_count, request.cpu, request.memory) == (2, 1.5, 2 * 1024**3)


@pytest.mark.anyio
async def test_a_launch_that_fails_keeps_the_form_open_with_the_reason(
    served: tuple[FakeDaemon, Client], proj: Path
) -> None:
    fake, client = served
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        await fill(pilot, screen, name="doomed")
        fake.backend.fail_next("create", BackendError("the engine refused: no space left", hint="free some"))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("no space left" in text for text in messages(app)), "the failure")
        failure = next(n for n in app._notifications if "no space left" in n.message)
        assert failure.severity == "error" and "hint: free some" in failure.message
        assert any(line.startswith("failed: the engine refused") for line in progress(screen))
        assert app.screen is screen and not screen.query_one("#launch-go", Button).disabled
        assert not any(error(screen, field) for field in FIELDS)

        await pilot.press("ctrl+s")  # the engine has room now: the same form launches
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), "the wizard to close")
        assert client.workspace("doomed")["state"] == "running"


@pytest.mark.anyio
async def test_a_workspace_that_settles_failed_keeps_the_form_open(
    served: tuple[FakeDaemon, Client], proj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake, client = served
    frames = [
        {"event": {"kind": "state", "message": "starting -> failed"}},
        {"workspace": {"name": "sad", "state": "failed", "reason": "the container exited with 1"}},
    ]
    monkeypatch.setattr(client, "up", lambda upload, *, name=None: (frame for frame in frames))  # a start that fails
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot, app, client, proj)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("exited with 1" in text for text in messages(app)), "the reason")
        assert "sad is failed: the container exited with 1" in messages(app)
        assert progress(screen)[-2:] == ["state: starting -> failed", "sad settled failed: the container exited with 1"]
        assert app.screen is screen and not screen.query_one("#launch-go", Button).disabled


@pytest.mark.anyio
async def test_no_daemon_is_a_notification_not_a_crash(folder: Path, proj: Path) -> None:
    client = Client(Target(socket=str(folder / "nobody.sock")), autostart=False)
    app = DevenvApp(client, poll_interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        screen = LaunchScreen(client, folder=proj)
        app.push_screen(screen)
        await until(pilot, lambda: any("cannot list the engines" in text for text in messages(app)), "the notice")
        assert value(screen, "engine") == "local"  # the spec's engine stays choosable
        await pilot.press("ctrl+s")
        await until(
            pilot,
            lambda: any(line.startswith("failed: the devenv daemon") for line in progress(screen)),
            "the launch to fail",
        )
        await until(pilot, lambda: any(text.startswith("the devenv daemon at") for text in messages(app)), "a notice")
        assert app.is_running and app.screen is screen
