"""One owner of workspace records (store/workspaces.py): compare-and-set on the generation, no other module
querying the table, and autostop's stop recorded as a person's is."""

from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.backends.base import LaunchRequest
from devenv.daemon.background import autostop as autostop_module
from devenv.daemon.background import idle
from devenv.daemon.services.converge import Superseded
from devenv.daemon.store import states
from devenv.daemon.store.db import make_engine, migrate, session_factory
from devenv.daemon.store.tables import Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload

DAEMON = Path(__file__).resolve().parents[2] / "devenv" / "daemon"


@pytest.fixture
def records(tmp_path: Path) -> WorkspaceRecords:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    return WorkspaceRecords(session_factory(engine))


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


def settle(fake: FakeDaemon, name: str, *, timeout: float = 10) -> Workspace | None:
    deadline = time.monotonic() + timeout
    while fake.daemon.scheduler.busy(name) and time.monotonic() < deadline:
        time.sleep(0.01)
    return fake.daemon.services.workspaces.records.get(name)


def up(fake: FakeDaemon, folder: Path, name: str) -> dict[str, Any]:
    with TestClient(fake.app, headers=fake.headers) as api:
        answer = api.post("/v1/workspaces", json=project_upload(folder, name=name))
    return dict(json.loads(answer.text.splitlines()[-1]))


# -- compare-and-set -----------------------------------------------------------------------------


def test_a_state_written_at_a_stale_generation_is_refused_and_changes_nothing(records: WorkspaceRecords) -> None:
    assert records.record_up("alice", "ws", "local", {"project_hash": "h1"}) == (1, True, False)
    asked = records.request(
        "ws", desired=states.DESIRE_STOPPED, state=states.STOPPING, unless={states.STOPPED}, reason="stopped by alice"
    )
    assert asked is not None and (asked.previous, asked.generation, asked.changed) == ("pending", 2, True)
    before = records.get("ws")
    assert before is not None

    assert not records.set_state("ws", states.RUNNING, generation=1, reason=None, ssh_port=2222, ever_ran=1)
    assert not records.delete("ws", generation=1)
    after = records.get("ws")
    assert after is not None
    kept = ("state", "reason", "desired", "generation", "ssh_port", "ever_ran", "updated_at")
    assert {key: getattr(after, key) for key in kept} == {key: getattr(before, key) for key in kept}

    assert records.set_state("ws", states.STOPPED, generation=2, reason="stopped by alice", ssh_port=None)
    assert not records.set_state("nobody", states.STOPPED, generation=1)  # gone: refused too
    assert records.delete("ws", generation=2) and records.get("ws") is None


def test_a_request_already_met_is_a_no_op_and_autostop_asks_only_while_it_runs(records: WorkspaceRecords) -> None:
    records.record_up("alice", "ws", "local", {"project_hash": "h1"})
    assert records.set_state("ws", states.STOPPED, generation=1)  # meant to run, not running
    stop = {"desired": states.DESIRE_STOPPED, "state": states.STOPPING, "unless": {states.STOPPED}}
    assert records.request("ws", only_up=True, **stop) is None  # autostop's: nothing asked
    asked = records.request("ws", **stop)
    assert asked is not None and (asked.generation, asked.changed) == (2, True)
    assert records.set_state("ws", states.STOPPED, generation=2)
    again = records.request("ws", **stop)
    assert again is not None and (again.generation, again.changed) == (2, False)
    assert records.request("nobody", **stop) is None


def test_the_converger_writes_at_the_generation_it_converges(fake: FakeDaemon, tmp_path: Path) -> None:
    up(fake, tmp_path / "p", "cas")
    stale = fake.daemon.converger.load("cas")
    assert stale is not None and stale.state == "running"
    fake.daemon.services.workspaces.stop("tester", "cas")
    stopped = settle(fake, "cas")
    assert stopped is not None and (stopped.state, stopped.generation) == ("stopped", stale.generation + 1)
    with pytest.raises(Superseded):
        fake.daemon.converger.set_state(stale, states.RUNNING, "from an older run", ssh_port=2222)
    again = fake.daemon.converger.load("cas")
    assert again is not None and (again.state, again.reason, again.ssh_port) == ("stopped", stopped.reason, None)


def test_a_stop_during_an_up_ends_the_older_run_and_the_stop_wins(fake: FakeDaemon, tmp_path: Path) -> None:
    """The run converging the `up` is in the middle of making the container when `stop` arrives: its next
    write is refused, it stops there (no `running` ever recorded), and the stop's own run stops the workspace."""
    creating, release = threading.Event(), threading.Event()
    create = fake.backend.create

    def slow_create(request: LaunchRequest) -> Any:
        creating.set()
        assert release.wait(10)
        return create(request)

    fake.backend.create = slow_create  # type: ignore[method-assign]
    answers: list[dict[str, Any]] = []
    asking = threading.Thread(target=lambda: answers.append(up(fake, tmp_path / "p", "raced")))
    asking.start()
    assert creating.wait(10)
    accepted = fake.daemon.services.workspaces.stop("tester", "raced")
    release.set()
    asking.join(20)
    final = settle(fake, "raced")
    assert final is not None and (final.desired, final.state, final.generation) == ("stopped", "stopped", 2)
    assert accepted.generation == 2 and answers and answers[0]["workspace"]["state"] == "stopped", answers
    moves = [e["message"] for e in fake.daemon.services.events.query("raced") if e["kind"] == "state"]
    assert not any("-> running" in move for move in moves), moves


# -- one owner -----------------------------------------------------------------------------------

QUERIES = {"select", "update", "delete", "insert", "query", "get", "merge"}


def _offences(source: str) -> list[str]:
    """Where code queries or writes the Workspace table itself: a select/update/delete/insert (or a session's
    query/get/merge) naming it, a new Workspace(...) row, or a column of it (Workspace.name == ...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            named = {
                inner.id
                for arg in [*node.args, *(k.value for k in node.keywords)]
                for inner in ast.walk(arg)
                if isinstance(inner, ast.Name)
            }
            if called in QUERIES and "Workspace" in named:
                found.append(f"line {node.lineno}: {called}(... Workspace ...)")
            if called == "Workspace":
                found.append(f"line {node.lineno}: Workspace(...)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Workspace":
            found.append(f"line {node.lineno}: Workspace.{node.attr}")
    return found


def test_the_check_finds_what_it_looks_for() -> None:
    assert _offences("session.scalars(select(Workspace).where(Workspace.name == n))")
    assert _offences("session.execute(update(Workspace).values(state=s))")
    assert _offences("session.add(Workspace(name=n))")
    assert _offences("session.scalar(select(func.count(Workspace.id)))")
    assert _offences("db.get(Workspace, 1)")
    assert not _offences("def f(ws: Workspace) -> Workspace | None:\n    return ws.name")


def test_only_the_store_reads_and_writes_workspace_records() -> None:
    found = {}
    for path in sorted(DAEMON.rglob("*.py")):
        if path.parent.name == "store" or "store" in path.relative_to(DAEMON).parts[:1]:
            continue
        if offences := _offences(path.read_text()):
            found[str(path.relative_to(DAEMON))] = offences
    assert not found, f"query workspace records through devenv.daemon.store.workspaces.WorkspaceRecords: {found}"


# -- autostop asks as a person does ----------------------------------------------------------------


def _probe(workspace: str, argv: list[str]) -> Any:
    if argv[-1].endswith("idle-probe"):
        return (
            0,
            json.dumps(
                {
                    "clock": time.time(),
                    "ssh_sessions": 0,
                    "cpu_usec": 0,
                    "gpus": None,
                    "jupyter": {"kernels": [], "last_activity": None},
                }
            ).encode(),
            b"",
        )
    return None


def _moves(fake: FakeDaemon, name: str, after: int) -> list[tuple[str, str]]:
    """What happened after event `after`: each event's kind and, for a state change, its states alone."""
    return [
        (e["kind"], e["message"].split(":")[0])
        for e in fake.daemon.services.events.query(name, after=after)
        if e["kind"] != "autostop"
    ]


def test_autostop_stops_as_a_person_does(fake: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.backend.exec_handler = _probe
    monkeypatch.setattr(autostop_module, "assess", lambda *_args: idle.Assessment(False, [], "nobody in"))
    for name in ("by-hand", "idle"):
        up(fake, tmp_path / name, name)
    records = fake.daemon.services.workspaces.records
    mark = max(e["id"] for e in fake.daemon.services.events.query(None))
    before = {name: records.get(name) for name in ("by-hand", "idle")}

    with TestClient(fake.app, headers=fake.headers) as api:
        api.post("/v1/workspaces/by-hand/stop")
    records.touch_active("idle", time.time() - 3600)  # past its autostop (30m); by-hand is no candidate now
    fake.daemon.autostop.run_pass()
    after = {name: settle(fake, name) for name in ("by-hand", "idle")}

    for name in ("by-hand", "idle"):
        was, now = before[name], after[name]
        assert was is not None and now is not None
        assert (now.desired, now.state, now.generation) == ("stopped", "stopped", was.generation + 1)
    assert (
        _moves(fake, "idle", mark)
        == _moves(fake, "by-hand", mark)
        == [("api", "stop"), ("state", "running -> stopping"), ("state", "stopping -> stopped")]
    )
    said = [e for e in fake.daemon.services.events.query("idle", after=mark) if e["kind"] == "autostop"]
    assert len(said) == 1 and "idle for 1h00m" in said[0]["message"] and "nobody in" in said[0]["message"]
    assert after["idle"].reason == "autostop: idle for 1h00m"  # type: ignore[union-attr]


def test_autostop_never_undoes_a_request_that_came_first(
    fake: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass read the workspace as running; before it decided, its owner removed it: nothing is asked."""
    fake.backend.exec_handler = _probe
    monkeypatch.setattr(autostop_module, "assess", lambda *_args: idle.Assessment(False, [], "nobody in"))
    up(fake, tmp_path / "p", "going")
    records = fake.daemon.services.workspaces.records
    records.touch_active("going", time.time() - 3600)
    read = records.get("going")
    fake.daemon.services.workspaces.remove("tester", "going", keep_volume=False)
    monkeypatch.setattr(fake.daemon.autostop.records, "autostop_candidates", lambda: [read])
    fake.daemon.autostop.run_pass()
    assert settle(fake, "going") is None
    assert not [e for e in fake.daemon.services.events.query("going") if e["kind"] == "autostop"]
