"""Reconciler, converger and autostop over the real store, with a FakeBackend behind the protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from devenv.backends.base import Handle, LaunchRequest, volume_name
from devenv.daemon.background import autostop as autostop_module
from devenv.daemon.background import idle
from devenv.daemon.store.tables import Workspace
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


def up(fake: FakeDaemon, folder: Path, name: str, **edits: str) -> dict[str, Any]:
    with TestClient(fake.app, headers=fake.headers) as api:
        answer = api.post("/v1/workspaces", json={**project_upload(folder, name=name, edit=edits or None)})
    let_go(fake, name)
    return json.loads(answer.text.splitlines()[-1])


def let_go(fake: FakeDaemon, name: str) -> None:
    """Wait (bounded) for the scheduler to let go of the workspace: the settled event is sent from inside the
    converger's run, a moment before, and a reconciler pass leaves a workspace whose run is under way alone."""
    deadline = time.monotonic() + 10
    while fake.daemon.reconciler.scheduler.busy(name):
        assert time.monotonic() < deadline, f"the converger still holds {name}"
        time.sleep(0.005)


def record(fake: FakeDaemon, name: str) -> Workspace | None:
    return fake.daemon.converger.load(name)


def settle(fake: FakeDaemon, name: str, *, timeout: float = 5) -> Workspace | None:
    deadline = time.monotonic() + timeout
    while fake.daemon.scheduler.busy(name) and time.monotonic() < deadline:
        time.sleep(0.01)
    return record(fake, name)


def test_one_list_call_per_engine_per_pass(fake: FakeDaemon, tmp_path: Path) -> None:
    for i in range(5):
        up(fake, tmp_path / f"p{i}", f"ws-{i}")
    before = fake.backend.calls["list_workspaces"]
    fake.daemon.reconciler.run_pass()
    assert fake.backend.calls["list_workspaces"] - before == 1
    assert fake.backend.calls["list_volumes"] <= 5  # only first starts look for a pre-existing home


def test_a_vanished_container_is_lost_with_its_reason_and_the_volume_is_kept(fake: FakeDaemon, tmp_path: Path) -> None:
    up(fake, tmp_path / "p", "gone")
    fake.backend.vanish("gone")
    fake.daemon.reconciler.run_pass()
    lost = record(fake, "gone")
    assert lost is not None and lost.state == "lost"
    assert "vanished" in (lost.reason or "") and fake.backend.url in (lost.reason or "")
    assert volume_name("gone") in {v.name for v in fake.backend.list_volumes()}
    with TestClient(fake.app, headers=fake.headers) as api:
        answer = api.post("/v1/workspaces/gone/start")
    assert json.loads(answer.text.splitlines()[-1])["workspace"]["state"] == "running"


def test_a_container_that_exited_on_its_own_shows_stopped(fake: FakeDaemon, tmp_path: Path) -> None:
    up(fake, tmp_path / "p", "crashy")
    fake.backend.exit("crashy", 137)
    fake.daemon.reconciler.run_pass()
    stopped = record(fake, "crashy")
    assert stopped is not None and stopped.state == "stopped" and "137" in (stopped.reason or "")


def test_a_queued_start_is_starting_with_the_queues_words_until_it_runs(fake: FakeDaemon, tmp_path: Path) -> None:
    """A batch backend's start only submits: the workspace is running (secrets, setup) only once its container
    is; meanwhile `ls` shows the queue's words."""
    fake.backend.queue_next_start("queued", listings=3)
    states: list[tuple[str, str | None]] = []
    original = fake.daemon.converger.set_state

    def watch(ws: Workspace, state: str, reason: str | None = None, **fields: Any) -> None:
        states.append((state, reason))
        original(ws, state, reason, **fields)

    fake.daemon.converger.set_state = watch  # type: ignore[method-assign]
    made = up(fake, tmp_path / "p", "queued")
    assert made["workspace"]["state"] == "running", made
    assert ("starting", "waiting: PENDING (Resources)") in states
    assert states.index(("starting", "waiting: PENDING (Resources)")) < [s for s, _ in states].index("running")
    assert fake.backend.calls["list_workspaces"] >= 3  # it looked until the job's container ran


def test_a_workspace_whose_host_failed_under_it_is_lost_and_stays_so(fake: FakeDaemon, tmp_path: Path) -> None:
    up(fake, tmp_path / "p", "on-node")
    fake.backend.fail_host("on-node", "NODE_FAIL (NodeDown) on node2")
    fake.daemon.reconciler.run_pass()
    lost = record(fake, "on-node")
    assert lost is not None and lost.state == "lost" and "NODE_FAIL (NodeDown) on node2" in (lost.reason or "")
    fake.daemon.reconciler.run_pass()  # still dead: not "its container is back"
    again = record(fake, "on-node")
    assert again is not None and again.state == "lost" and again.reason == lost.reason


def test_containers_labeled_as_ours_without_a_record_are_adopted(fake: FakeDaemon) -> None:
    handle = fake.backend.create(LaunchRequest(workspace="stray", owner="alice", image="img", image_hash="abc"))
    fake.backend.start(handle)
    fake.daemon.reconciler.run_pass()
    adopted = record(fake, "stray")
    assert adopted is not None and (adopted.state, adopted.owner, adopted.image_hash) == ("running", "alice", "abc")
    assert any("adopted" in e["message"] for e in fake.daemon.services.events.query("stray"))


def test_another_daemons_workspaces_on_a_shared_engine_are_never_adopted(fake: FakeDaemon, tmp_path: Path) -> None:
    mine = fake.daemon.converger.daemon_id
    assert mine  # every store has one, and its containers carry it
    up(fake, tmp_path / "p", "labelled")
    assert {seen.workspace: seen.daemon for seen in fake.backend.list_workspaces()} == {"labelled": mine}
    for name, daemon in (("theirs", "0123456789abcdef"), ("again", mine)):
        image = next(iter(fake.backend.images or []), "img")  # the engine has the image `up` built
        handle = fake.backend.create(
            LaunchRequest(workspace=name, owner="bob", image=image, image_hash="abc", daemon=daemon)
        )
        fake.backend.start(handle)
    fake.daemon.reconciler.run_pass()
    assert record(fake, "theirs") is None  # bob's daemon keeps it: ours never stops or removes it
    assert record(fake, "again") is not None  # ours (a store restored from backup, say)
    again = fake_daemon(tmp_path / "second", fake.backend)  # a second store on the same engine
    assert again.daemon.converger.daemon_id != mine
    again.daemon.reconciler.run_pass()
    assert sorted(w.workspace for w in fake.backend.list_workspaces() if w.running) == ["again", "labelled", "theirs"]
    with again.daemon.converger.sessions() as session:
        assert session.query(Workspace).count() == 0


def test_work_left_half_done_is_resumed(fake: FakeDaemon, tmp_path: Path) -> None:
    up(fake, tmp_path / "p", "half")
    fake.backend.remove(Handle.for_workspace("half"), keep_volume=True)
    with fake.daemon.converger.sessions.begin() as session:  # as if the daemon died mid-start
        session.execute(update(Workspace).where(Workspace.name == "half").values(state="starting"))
    fake.daemon.reconciler.run_pass()
    resumed = settle(fake, "half")
    assert resumed is not None and resumed.state == "running"
    assert [w.workspace for w in fake.backend.list_workspaces()] == ["half"]


def test_an_unreachable_engine_keeps_the_record_and_names_the_url(fake: FakeDaemon, tmp_path: Path) -> None:
    up(fake, tmp_path / "p", "kept")
    settle(fake, "kept")  # the up answers once running; its converge may still be finishing (the reconciler waits)
    fake.backend.reachable = False
    fake.daemon.reconciler.run_pass()  # lost while its engine does not answer, with the reason; the record stays
    lost = record(fake, "kept")
    assert lost is not None and lost.state == "lost" and "does not answer" in (lost.reason or "")
    assert fake.backend.name in (lost.reason or "")
    fake.backend.reachable = True
    fake.daemon.reconciler.run_pass()  # it answers again, the container still runs: back, by itself
    back = record(fake, "kept")
    assert back is not None and back.state == "running" and back.reason == "found running again"
    fake.backend.reachable = False
    with TestClient(fake.app, headers=fake.headers) as api:
        last = json.loads(api.post("/v1/workspaces/kept/stop").text.splitlines()[-1])
    assert last["error"]["code"] == "engine_unreachable" and fake.backend.url in last["error"]["message"]
    kept = record(fake, "kept")
    assert kept is not None and kept.state == "failed"
    assert any(
        e["kind"] == "reconcile" and fake.backend.url in e["message"] for e in fake.daemon.services.events.query(None)
    )


def probe_output(*, ssh: int = 0, busy: bool = False, cpu_usec: int = 0, gpus: list[int] | None = None) -> bytes:
    kernels = [{"id": "k1", "execution_state": "busy" if busy else "idle", "last_activity": "2020-01-01T00:00:00Z"}]
    return json.dumps(
        {
            "clock": time.time(),
            "ssh_sessions": ssh,
            "cpu_usec": cpu_usec,
            "gpus": gpus,
            "jupyter": {"kernels": kernels, "last_activity": "2020-01-01T00:00:00Z"},
        }
    ).encode()


def test_autostop_stops_idle_workspaces_and_says_why(fake: FakeDaemon, tmp_path: Path) -> None:
    state: dict[str, Any] = {"busy": True, "cpu": 0}

    def handler(workspace: str, argv: list[str]) -> Any:
        if argv[-1].endswith("idle-probe"):
            state["cpu"] += 10_000_000 if state["busy"] else 10
            return 0, probe_output(busy=state["busy"], cpu_usec=state["cpu"]), b""
        return None

    fake.backend.exec_handler = handler
    up(fake, tmp_path / "p", "sleepy", **{"autostop: 30m": "autostop: 1s"})
    autostop = fake.daemon.autostop
    for _ in range(3):  # a busy kernel: never stopped, however long
        autostop.run_pass()
        time.sleep(0.6)
    assert record(fake, "sleepy").state == "running"  # type: ignore[union-attr]
    state["busy"] = False
    autostop.run_pass()
    time.sleep(1.1)
    autostop.run_pass()
    stopped = settle(fake, "sleepy")
    assert stopped is not None and stopped.state == "stopped" and "autostop" in (stopped.reason or "")
    events = [e["message"] for e in fake.daemon.services.events.query("sleepy") if e["kind"] == "autostop"]
    assert events and "idle for" in events[0] and "no busy kernel" in events[0]


def test_a_busy_kernel_alone_keeps_a_workspace_past_its_autostop(
    fake: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell that runs without using the CPU (waiting on a download, on a GPU job, on input) is still work:
    nobody in by SSH, CPU idle, no GPU, the workspace long past its autostop, and only the kernel keeps it."""
    state: dict[str, Any] = {"busy": True, "clock": time.time(), "cpu": 0}

    def handler(workspace: str, argv: list[str]) -> Any:
        if argv[-1].endswith("idle-probe"):
            state["clock"] += 60.0  # a minute between samples, CPU all but unused (10 us)
            state["cpu"] += 10
            out = json.loads(probe_output(busy=state["busy"], cpu_usec=state["cpu"]))
            return 0, json.dumps({**out, "clock": state["clock"]}).encode(), b""
        return None

    verdicts: list[idle.Assessment] = []
    assess = autostop_module.assess

    def recorded(*args: Any) -> idle.Assessment:
        verdicts.append(assess(*args))
        return verdicts[-1]

    monkeypatch.setattr(autostop_module, "assess", recorded)
    fake.backend.exec_handler = handler
    up(fake, tmp_path / "p", "thinking", **{"autostop: 30m": "autostop: 1s"})
    autostop = fake.daemon.autostop

    def idle_for_an_hour() -> float:
        long_ago = time.time() - 3600
        with fake.daemon.converger.sessions.begin() as session:
            session.execute(update(Workspace).where(Workspace.name == "thinking").values(last_active_at=long_ago))
        return long_ago

    autostop.run_pass()  # the first sample: CPU not measured yet
    long_ago = idle_for_an_hour()
    autostop.run_pass()
    assert verdicts[-1].active and verdicts[-1].reasons == ["kernel busy"], verdicts[-1]
    kept = settle(fake, "thinking")
    assert kept is not None and (kept.state, kept.desired) == ("running", "running"), kept
    assert kept.last_active_at is not None and kept.last_active_at > long_ago + 3000  # the kernel counted as use

    # the control: the same workspace, as idle for as long, with the kernel done, is stopped
    state["busy"] = False
    idle_for_an_hour()
    autostop.run_pass()
    assert not verdicts[-1].active and "no busy kernel" in verdicts[-1].summary, verdicts[-1]
    assert "CPU 0.0% < 10%" in verdicts[-1].summary
    stopped = settle(fake, "thinking")
    assert stopped is not None and stopped.state == "stopped" and "autostop" in (stopped.reason or "")


def test_autostop_ignores_workspaces_without_it_and_running_execs(fake: FakeDaemon, tmp_path: Path) -> None:
    fake.backend.exec_handler = lambda ws, argv: (0, probe_output(), b"") if argv[-1].endswith("idle-probe") else None
    up(fake, tmp_path / "p", "never", **{"autostop: 30m": "autostop: off"})
    up(fake, tmp_path / "q", "training", **{"autostop: 30m": "autostop: 1s"})
    with fake.daemon.services.workspaces.execs.running("training"):
        for _ in range(3):
            fake.daemon.autostop.run_pass()
            time.sleep(0.5)
        assert record(fake, "training").state == "running"  # type: ignore[union-attr]
    assert record(fake, "never").state == "running"  # type: ignore[union-attr]
    assert fake.backend.calls["exec"] == 0  # no probe at all while an exec runs, none without autostop
