"""`devenv lock` and `devenv build` through the daemon, the one owner of the engines: the real CLI against a
fake daemon served on a real socket (a FakeBackend behind it), and the stream the routes answer with."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import pytest

from devenv.build.project import checked_lock, open_project, project_plan
from devenv.daemon.api.work_stream import Channel, work_frames
from devenv.errors import LockMissing
from devenv.lock.lockfile import read_lock
from devenv.progress import emit
from devenv.testing.daemon import FakeDaemon
from devenv.testing.fake_images import FAKE_ARCH
from devenv.testing.projects import copy_template
from harness.in_process_cli import cli


def test_lock_is_resolved_by_the_daemon_and_written_beside_the_spec(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = copy_template("minimal", tmp_path / "lab", project_name="lab")
    code, out, err = cli(capsys, "lock", "-f", str(spec))
    assert code == 0, err
    assert len(cli_daemon.backend.locked) == 1  # the backend's engine resolved it, not this process
    assert cli_daemon.backend.locked[0].directory != spec.parent  # in the daemon's own copy of the files
    written = spec.parent / "devenv.lock"
    assert read_lock(written).base.image == "devenv/base:cpu-fake" and "written" in out
    before = written.read_bytes()
    code, out, err = cli(capsys, "lock", "-f", str(spec))
    assert code == 0 and "unchanged" in out and written.read_bytes() == before
    assert len(cli_daemon.backend.locked) == 2
    assert not list(spec.parent.glob(".devenv.lock.*"))  # no partial file left


def test_build_answers_the_plans_tag_and_a_missing_lock_is_named_before_any_engine(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = copy_template("minimal", tmp_path / "lab", project_name="lab")
    code, _, err = cli(capsys, "build", "-f", str(spec))
    assert code == 1 and "lock_missing" in err and "devenv.lock" in err and "Traceback" not in err
    assert cli_daemon.backend.calls["build"] == 0
    assert cli(capsys, "lock", "-f", str(spec))[0] == 0
    code, out, err = cli(capsys, "build", "-f", str(spec))
    assert code == 0, err
    project = open_project(spec)
    assert out.strip() == project_plan(project, checked_lock(project, FAKE_ARCH), provenance=False).tag
    assert cli_daemon.backend.images is not None and out.strip() in cli_daemon.backend.images


def test_bad_input_is_named_and_leaves_nothing(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = copy_template("minimal", tmp_path / "lab", project_name="lab")
    code, _, err = cli(capsys, "lock", "-f", str(spec), "--on", "nowhere")
    assert code == 2 and "no backend named 'nowhere'" in err and "local" in err
    spec.write_text(spec.read_text() + "pyhton: '3.11'\n")
    code, _, err = cli(capsys, "lock", "-f", str(spec))
    assert code == 2 and "devenv.yaml:" in err and "did you mean 'python'" in err
    assert not (spec.parent / "devenv.lock").exists() and not cli_daemon.backend.locked


def test_an_engine_that_does_not_answer_is_named(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = copy_template("minimal", tmp_path / "lab", project_name="lab")
    assert cli(capsys, "lock", "-f", str(spec))[0] == 0
    cli_daemon.backend.reachable = False
    code, out, err = cli(capsys, "build", "-f", str(spec))
    assert code == 1 and "engine_unreachable" in err and cli_daemon.backend.url in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("args", "argv"),
    [
        (["--", "sh", "-c", "exit 3"], ["sh", "-c", "exit 3"]),
        (["--no-network", "python", "-c", "print(1)"], ["python", "-c", "print(1)"]),
    ],
)
def test_run_locks_builds_and_runs_the_command_as_given_on_the_daemons_engine(
    cli_daemon: FakeDaemon,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    argv: list[str],
) -> None:
    spec = copy_template("minimal", tmp_path / "lab", project_name="lab")
    monkeypatch.chdir(spec.parent)
    cli_daemon.backend.exec_handler = lambda image, words: (3, b"out\n", b"err\n")
    code, out, err = cli(capsys, "run", *args)
    assert code == 3, err
    assert "no devenv.lock yet" in err and (spec.parent / "devenv.lock").is_file()  # resolved first, and kept
    assert out == "out\n" and err.endswith("err\n")  # the command's output, each on its own stream
    ((image, ran, network),) = cli_daemon.backend.runs
    assert ran == argv and network == ("--no-network" not in args)
    assert cli_daemon.backend.images == {image}  # built first, on the same engine
    code, _, err = cli(capsys, "run", "--", "true")
    assert code == 3 and "no devenv.lock yet" not in err and len(cli_daemon.backend.runs) == 2


def _frames(work: object) -> list[dict[str, object]]:
    async def read() -> list[bytes]:
        return [chunk async for chunk in work_frames(work)]  # type: ignore[arg-type]

    return [json.loads(chunk) for chunk in asyncio.run(read()) if chunk.strip()]


def test_the_stream_carries_progress_then_the_answer_or_the_error() -> None:
    def works(channel: Channel) -> dict[str, object]:
        emit(channel.progress, "phase", "resolving")
        emit(channel.progress, "download", "wheels", current=1, total=3)
        return {"built": {"tag": "devenv/x:1"}}

    assert _frames(works) == [
        {"progress": {"kind": "phase", "message": "resolving", "current": None, "total": None}},
        {"progress": {"kind": "download", "message": "wheels", "current": 1, "total": 3}},
        {"built": {"tag": "devenv/x:1"}},
    ]

    def refused(channel: Channel) -> dict[str, object]:
        raise LockMissing("devenv.lock: no lock", hint="run `devenv lock`")

    assert _frames(refused)[-1]["error"] == {
        "code": "lock_missing",
        "message": "devenv.lock: no lock",
        "hint": "run `devenv lock`",
    }

    def broken(channel: Channel) -> dict[str, object]:
        raise KeyError("a bug")

    error = _frames(broken)[-1]["error"]
    assert isinstance(error, dict) and error["message"] == "the daemon failed: KeyError"


def test_a_reader_that_goes_away_stops_the_command_at_once_and_one_that_reads_to_the_end_does_not() -> None:
    stopped = threading.Event()
    release = threading.Event()

    def command(channel: Channel) -> dict[str, object]:
        channel.on_stop(lambda: (stopped.set(), release.set()))
        channel.send({"stdout": "aGk="})
        release.wait(timeout=30)  # a command that runs until it is stopped
        return {"exit": 137}

    async def reader_goes_away() -> bytes:
        frames = work_frames(command)  # type: ignore[arg-type]
        first = await anext(frames)
        reading = asyncio.ensure_future(anext(frames))  # waits for a line that does not come
        await asyncio.sleep(0.2)
        reading.cancel()  # what Starlette does when the client disconnects
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        return first

    started = time.monotonic()
    assert json.loads(asyncio.run(reader_goes_away())) == {"stdout": "aGk="}
    assert stopped.wait(timeout=5) and time.monotonic() - started < 5  # not at the next heartbeat (10 s)

    stops: list[str] = []

    def quick(channel: Channel) -> dict[str, object]:
        channel.on_stop(lambda: stops.append("stopped"))
        return {"exit": 0}

    assert _frames(quick) == [{"exit": 0}] and stops == []


def test_verify_is_done_by_the_daemon_and_needs_the_lock(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = copy_template("minimal", tmp_path / "lab", project_name="lab")
    code, _, err = cli(capsys, "verify", str(spec.parent))
    assert code == 2 and "no devenv.lock beside" in err and "devenv build" in err
    assert cli_daemon.backend.calls["verify"] == 0
    assert cli(capsys, "lock", "-f", str(spec))[0] == 0
    code, built, _ = cli(capsys, "build", "-f", str(spec))
    code, out, err = cli(capsys, "verify", str(spec.parent))
    assert code == 0, err
    assert cli_daemon.backend.calls["verify"] == 1 and f"verified: {built.strip()}" in err
    assert out.strip().startswith("sha256:")


def test_images_are_listed_and_made_on_the_daemons_engine(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "images", "ls")
    assert code == 0, err
    assert "cpu" in out and "not made (`devenv images bootstrap`)" in out
    code, out, err = cli(capsys, "images", "bootstrap", "--base", "cpu")
    assert code == 0, err
    assert cli_daemon.backend.bases == {"cpu"} and "sha256:" in out and "(bootstrap)" in out
    code, out, _ = cli(capsys, "images", "ls")
    cpu_line = next(line for line in out.splitlines() if line.startswith("cpu"))
    assert "sha256:" in cpu_line and "not made" not in cpu_line
    code, _, err = cli(capsys, "images", "bootstrap", "--base", "nope")
    assert code == 2 and "no base recipe named 'nope'" in err
