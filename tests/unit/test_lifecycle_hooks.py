"""Lifecycle hooks and /dev/shm through the daemon (real store and app, a FakeBackend): hooks.create once per
home, hooks.start on every start after it, parallel groups, a failing hook failing the workspace (kept, with
its output's tail), and the shm and ulimits each container is created with.

The hook scripts themselves run for real in bash on this machine: the fake's exec hands them to bash with the
home mapped to a temporary folder, so what they print, write and exit with is what bash does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.backends.base import GIB, HOME_MOUNT, Handle, default_shm
from devenv.backends.containers import limit_refused
from devenv.errors import BackendError
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import ExecResult, FakeBackend
from devenv.versioning import hooks, scripts

WS = "hooked"


class Bash:
    """The fake's exec handler: setup scripts (as_dev) run in real bash, with /home/dev mapped to `home`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.scripts: list[str] = []

    def __call__(self, workspace: str, argv: list[str]) -> ExecResult | None:
        if not (len(argv) == 5 and argv[:2] == ["bash", "-c"] and argv[3] == "devenv-setup"):
            return None  # the marker's cat and echo: the fake's shell, on the fake home volume
        assert argv == scripts.as_dev(argv[4])
        script = argv[4].replace(HOME_MOUNT, str(self.home))
        self.scripts.append(script)
        done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
        return done.returncode, done.stdout + done.stderr, b""


@pytest.fixture
def bash(tmp_path: Path) -> Bash:
    (tmp_path / "home").mkdir()
    return Bash(tmp_path / "home")


@pytest.fixture
def fake(tmp_path: Path, bash: Bash) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon", FakeBackend("local", exec_handler=bash))


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def upload(folder: Path, extra: str, *, edit: dict[str, str] | None = None) -> dict[str, Any]:
    return project_upload(folder, name=WS, edit={"autostop: 30m\n": "autostop: 30m\n" + extra, **(edit or {})})


def up(api: TestClient, project: dict[str, Any]) -> dict[str, Any]:
    """The workspace as the up left it (a failed one ends the stream with its error instead)."""
    last = frames(api.post("/v1/workspaces", json={**project, "name": WS}))[-1]
    return last.get("workspace") or {**api.get(f"/v1/workspaces/{WS}").json(), "error": last.get("error")}


def events(api: TestClient) -> list[str]:
    return [event["message"] for event in api.get("/v1/events", params={"workspace": WS}).json()["items"]]


HOOKS = """\
hooks:
  create:
    - echo create >> order.log
  start:
    - echo start >> order.log
"""


def test_create_runs_once_per_home_and_start_on_every_start(
    api: TestClient, fake: FakeDaemon, bash: Bash, tmp_path: Path
) -> None:
    order = bash.home / "order.log"
    assert up(api, upload(tmp_path / "p", HOOKS))["state"] == "running"
    assert order.read_text().split() == ["create", "start"]
    assert hooks.read_marker(fake.backend, Handle.for_workspace(WS)) == hooks.steps_hash(["echo create >> order.log"])
    said = events(api)
    assert any(message.startswith("hooks.create: 1 step ran in") for message in said)
    assert any(message.startswith("hooks.start: 1 step ran in") for message in said)
    setup = api.get(f"/v1/workspaces/{WS}").json()["setup"]["hooks"]
    assert setup["ok"] and setup["create"]["status"] == "ran" and setup["folder"] == HOME_MOUNT

    assert frames(api.post(f"/v1/workspaces/{WS}/stop"))[-1]["workspace"]["state"] == "stopped"
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    assert order.read_text().split() == ["create", "start", "start"]  # the marker in the home held

    frames(api.post(f"/v1/workspaces/{WS}/stop"))
    fake.backend.remove_container(Handle.for_workspace(WS))  # a new container on the same home
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    assert order.read_text().split() == ["create", "start", "start", "start"]

    assert frames(api.delete(f"/v1/workspaces/{WS}"))[-1] == {"deleted": WS}  # the home goes too
    assert up(api, upload(tmp_path / "p2", HOOKS))["state"] == "running"
    assert order.read_text().split() == ["create", "start", "start", "start", "create", "start"]


def test_changed_create_steps_are_reported_not_run(api: TestClient, bash: Bash, tmp_path: Path) -> None:
    up(api, upload(tmp_path / "p", HOOKS))
    changed = HOOKS.replace("echo create >>", "echo changed >>")
    assert up(api, upload(tmp_path / "p2", changed))["state"] == "running"
    assert "changed" not in (bash.home / "order.log").read_text()
    assert sum("hooks.create changed since they ran in this home" in message for message in events(api)) == 1
    assert frames(api.post(f"/v1/workspaces/{WS}/stop"))[-1]["workspace"]["state"] == "stopped"
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    assert sum("hooks.create changed" in message for message in events(api)) == 1  # said once


def test_a_parallel_group_runs_its_commands_at_once(api: TestClient, bash: Bash, tmp_path: Path) -> None:
    group = """\
hooks:
  create:
    - fetch: "until [ -e ready ]; do sleep 0.05; done; echo fetched > fetched"
      build: "echo building; touch ready"
    - cat fetched > after
"""
    assert up(api, upload(tmp_path / "p", group))["state"] == "running"  # one waits on the other: concurrent
    assert (bash.home / "after").read_text() == "fetched\n"


def test_a_group_prefixes_each_line_and_names_the_failing_command(tmp_path: Path) -> None:
    bash = Bash(tmp_path)
    backend = FakeBackend(exec_handler=bash)
    backend.create(_request())
    handle = backend.start(Handle.for_workspace("g")) and Handle.for_workspace("g")
    lines: list[str] = []
    done = hooks.run_step(
        backend,
        handle,
        {"a": "echo one; echo two", "b": "echo three; exit 4", "c": "true"},
        HOME_MOUNT,
        lines.append,
        limit=60,
        log=hooks.log_path("start", 1),
    )
    assert done.code == 4 and done.failed_command == "b: echo three; exit 4"
    assert {"[a] one", "[a] two", "[b] three", "devenv-hook: b exited 4"} <= set(lines)


def test_a_failing_create_hook_fails_the_workspace_and_keeps_it(
    api: TestClient, fake: FakeDaemon, bash: Bash, tmp_path: Path
) -> None:
    failing = """\
hooks:
  create:
    - echo first >> order.log
    - 'echo "Collecting nothing-here"; echo "ERROR: No matching distribution" >&2; exit 3'
  start:
    - echo start >> order.log
"""
    ws = up(api, upload(tmp_path / "p", failing))
    assert ws["state"] == "failed"
    assert ws["reason"].startswith('hooks.create step 2 (`echo "Collecting nothing-here"; echo "ERROR: No match')
    assert "exited 3; output ends: Collecting nothing-here | ERROR: No matching distribution" in ws["reason"]
    [seen] = fake.backend.list_workspaces()
    assert seen.running  # kept: not rolled back, home and container as they are
    assert ws["ssh_port"] == seen.ports[22]
    assert (bash.home / "order.log").read_text().split() == ["first"]  # start hooks wait for create
    assert any("exited 3 (fix:" in message and "ERROR: No matching distribution" in message for message in events(api))
    assert hooks.read_marker(fake.backend, Handle.for_workspace(WS)) is None  # written only on success

    assert ws["error"]["code"] == "hook_failed" and "devenv up" in ws["error"]["hint"]
    frames(api.post(f"/v1/workspaces/{WS}/start"))  # runs the failed hook again
    assert api.get(f"/v1/workspaces/{WS}").json()["state"] == "failed"
    assert (bash.home / "order.log").read_text().split() == ["first", "first"]

    fixed = up(api, upload(tmp_path / "p2", failing.replace("exit 3", "exit 0")))
    assert fixed["state"] == "running", fixed
    assert (bash.home / "order.log").read_text().split() == ["first", "first", "first", "start"]
    assert hooks.read_marker(fake.backend, Handle.for_workspace(WS)) is not None


def test_a_failing_start_hook_fails_the_workspace(api: TestClient, tmp_path: Path) -> None:
    ws = up(api, upload(tmp_path / "p", "hooks:\n  start:\n    - grep -q never /dev/null\n"))
    assert ws["state"] == "failed" and ws["reason"] == "hooks.start step 1 (`grep -q never /dev/null`) exited 1"


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` has ended (or is a zombie nobody reaped yet), polled for at most `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _read_pid(path: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def test_a_step_past_its_limit_is_killed_and_fails_the_workspace(
    api: TestClient, fake: FakeDaemon, bash: Bash, tmp_path: Path
) -> None:
    hung = """\
hooks:
  timeout: 1s
  start:
    - echo waiting; sleep 30 & echo $! > c; echo $$ > s; wait
    - echo never >> order.log
"""
    began = time.monotonic()
    ws = up(api, upload(tmp_path / "p", hung))
    assert time.monotonic() - began < 25  # not the 30 s of the sleep
    assert ws["state"] == "failed"
    assert ws["reason"] == (
        "hooks.start step 1 (`echo waiting; sleep 30 & echo $! > c; echo $$ > s; wait`) "
        "ran past its 1s limit; output ends: waiting"
    )
    assert "hooks.timeout" in ws["error"]["hint"] and "background" in ws["error"]["hint"]
    assert not (bash.home / "order.log").exists()  # the next step never ran
    assert _gone(_read_pid(bash.home / "s")) and _gone(_read_pid(bash.home / "c"))  # the whole group
    [seen] = fake.backend.list_workspaces()
    assert seen.running  # kept, as for a failing step


def test_a_step_exiting_124_itself_did_not_run_past_its_limit(api: TestClient, tmp_path: Path) -> None:
    ws = up(api, upload(tmp_path / "p", "hooks:\n  start:\n    - exit 124\n"))
    assert ws["state"] == "failed" and ws["reason"] == "hooks.start step 1 (`exit 124`) exited 124"


def test_the_default_limits_are_per_phase() -> None:
    assert hooks.DEFAULT_LIMITS == {"create": 30 * 60, "start": 10 * 60}
    assert hooks.limit_text(600) == "10m" and hooks.limit_text(5400) == "1h30m" and hooks.limit_text(45) == "45s"
    script = hooks.step_script("make serve", HOME_MOUNT, limit=600, log=hooks.log_path("start", 1))
    assert "timeout --kill-after=10s 600s bash -c" in script


def test_a_background_step_is_not_waited_for_and_logs_its_output(api: TestClient, bash: Bash, tmp_path: Path) -> None:
    served = """\
hooks:
  timeout: 5s
  start:
    - background: "echo $$ > server.pid; echo serving on 8501; exec sleep 60"
    - echo after >> order.log
"""
    pid = None
    try:
        ws = up(api, upload(tmp_path / "p", served))
        pid = _read_pid(bash.home / "server.pid")
        assert ws["state"] == "running", ws
        assert (bash.home / "order.log").read_text() == "after\n"  # the next step ran without waiting
        assert not _gone(pid, within=0)  # still serving after the up ended (and past the 5s limit's reach)
        log = bash.home / ".devenv" / "hooks" / "start-1.log"
        deadline = time.monotonic() + 10
        while "serving on 8501" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text() == "serving on 8501\n"
        assert any(
            message.startswith("hooks.start step 1 (`echo $$ > server.pid; echo serving on 8501; exec ")
            and message.endswith("runs in the background; its output: ~/.devenv/hooks/start-1.log")
            for message in events(api)
        )
    finally:
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)  # its own session (setsid): the container's end, here


def test_a_second_setup_run_ends_the_last_background_run_first(api: TestClient, bash: Bash, tmp_path: Path) -> None:
    """`devenv up` with changed code in a running workspace runs hooks.start again: one server, the new one."""
    served = 'hooks:\n  start:\n    - background: "echo $$ > server.pid; exec sleep 60"\n'
    pids: list[int] = []
    try:
        assert up(api, upload(tmp_path / "p", served))["state"] == "running"
        pids.append(_read_pid(bash.home / "server.pid"))
        (bash.home / "server.pid").unlink()
        changed = up(api, upload(tmp_path / "p2", served + "# changed\n"))
        assert changed["state"] == "running", changed
        pids.append(_read_pid(bash.home / "server.pid"))
        assert pids[0] != pids[1] and _gone(pids[0]) and not _gone(pids[1], within=0)
    finally:
        for pid in pids:
            if not _gone(pid, within=0):
                os.killpg(pid, signal.SIGKILL)


def test_a_process_a_step_leaves_running_does_not_hold_it(api: TestClient, bash: Bash, tmp_path: Path) -> None:
    """`server &` in a plain step: the step ends with its shell, though the server still has its output."""
    left = "hooks:\n  start:\n    - echo starting; sleep 60 & echo $! > left.pid\n    - echo after >> order.log\n"
    pid = None
    try:
        ws = up(api, upload(tmp_path / "p", left))
        pid = _read_pid(bash.home / "left.pid")
        assert ws["state"] == "running", ws
        assert (bash.home / "order.log").read_text() == "after\n"
        assert not _gone(pid, within=0)  # left running, as the step meant
        assert (bash.home / ".devenv" / "hooks" / "start-1.log").read_text() == "starting\n"  # each step's log
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def test_hooks_run_in_the_uploaded_code_folder_when_there_is_one() -> None:
    from devenv.daemon.services.lifecycle import project_folder
    from devenv.spec.models import Spec

    spec = Spec.model_validate({"name": "x", "python": "3.11"})
    assert project_folder(spec, {"code": {"folder": "/home/dev/x"}}) == "/home/dev/x"
    assert project_folder(spec, {"code": None}) == HOME_MOUNT


def test_hooks_wait_for_code_that_was_not_placed() -> None:
    """`pip install -e .` in the bare home would fail for a reason that is not the hook's: they wait."""
    from types import SimpleNamespace

    from devenv.daemon.services import lifecycle
    from devenv.spec.models import Spec

    recorded: list[str] = []
    spec = Spec.model_validate({"name": "x", "hooks": {"create": ["pip install -e ."]}})
    events = SimpleNamespace(record=lambda _ws, _kind, message, **_: recorded.append(message))
    context = SimpleNamespace(
        spec=spec,
        ws=SimpleNamespace(name="x"),
        events=events,
        setup={"code": {"ok": False, "folder": "/home/dev/x", "status": "failed"}},
    )
    record = lifecycle.run(context)  # type: ignore[arg-type]
    assert record is not None and record["status"] == "skipped" and record["failed"] is None
    assert recorded == ["hooks not run: the project's code was not placed (they run at the next start that places it)"]


# -- /dev/shm and ulimits ------------------------------------------------------------------------


def test_shm_defaults_to_half_the_memory_limit(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    limits = "  ulimits:\n    memlock: -1\n    nofile: 65536\n"
    assert up(api, upload(tmp_path / "p", "", edit={"memory: 4Gi\n": "memory: 4Gi\n" + limits}))["state"] == "running"
    launched = fake.backend.launched(WS)
    assert launched.shm == 2 * GIB  # the template's 4Gi limit
    assert dict(launched.ulimits) == {"memlock": -1, "nofile": 65536}


def test_shm_as_the_spec_says(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    up(api, upload(tmp_path / "p", "", edit={"memory: 4Gi\n": "memory: 4Gi\n  shm: 3Gi\n"}))
    assert fake.backend.launched(WS).shm == 3 * GIB and dict(fake.backend.launched(WS).ulimits) == {}


def test_shm_default_without_a_memory_limit_is_half_the_host() -> None:
    backend = FakeBackend()
    backend.memory = 64 * GIB
    assert default_shm(None, backend) == 32 * GIB
    assert default_shm(1 * GIB, backend) == GIB  # at least 1 GiB
    backend.memory = GIB // 2
    assert default_shm(None, backend) == GIB // 2  # never more than the machine has
    assert default_shm(8 * GIB, backend) == GIB // 2
    backend.memory = None
    assert default_shm(None, backend) == GIB and default_shm(6 * GIB, object()) == 3 * GIB


def test_an_engine_refusing_a_limit_names_it() -> None:
    raw = BackendError(
        "starting devenv-x on unix:///var/run/docker.sock: failed to create shim task: OCI runtime "
        "create failed: error setting rlimits for ready process: error setting rlimit type 8: "
        "operation not permitted: unknown"
    )
    meant = limit_refused(raw, "unix:///var/run/docker.sock")
    assert meant is not None and "memlock" in meant.message and "resources.ulimits.memlock" in (meant.hint or "")
    assert limit_refused(BackendError("starting: no such image"), "x") is None


def _request() -> Any:
    from devenv.backends.base import LaunchRequest

    return LaunchRequest(workspace="g", owner="t", image="i", image_hash="h", ssh=False)
