"""Hosts in the daemon, over fake backends (no network): a host going away and coming back, GPUs chosen for a
container, `up --on NAME|auto`, and /v1/hosts with its admin-only changes and checks made before connecting."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from devenv.backends.base import Gpu, Handle, HostFacts, HostInspectable, LaunchRequest
from devenv.backends.ssh.session import load_private_key
from devenv.backends.ssh.target import parse_target
from devenv.daemon.services.backends import BackendEntry
from devenv.daemon.services.hosts import Hosts
from devenv.daemon.store.tables import Host, Workspace
from devenv.errors import error_from_payload
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import FakeBackend

A100 = "NVIDIA A100-SXM4-80GB"
RTX = "NVIDIA GeForce RTX 4090"
GPU_1 = {"resources:\n": "resources:\n  gpu: 1\n"}


def gpu(index: int, name: str = A100, *, used: int = 0) -> Gpu:
    return Gpu(index=str(index), name=name, memory_total_mib=81920, memory_used_mib=used, utilization_percent=0)


class InspectableFake(FakeBackend):
    """A FakeBackend that describes its machine (HostInspectable), with GPUs held by its running containers as
    DockerBackend.facts reads them from their labels; keeps every LaunchRequest it is asked to create."""

    def __init__(self, name: str, gpus: list[Gpu] | None = None) -> None:
        super().__init__(name, f"fake://{name}")
        self.gpus = list(gpus or [])
        self.requests: list[LaunchRequest] = []
        self.probe_seconds = 0.0

    def create(self, request: LaunchRequest) -> Handle:
        with self._lock:
            self.requests.append(request)
        return super().create(request)

    def facts(self) -> HostFacts:
        with self._lock:
            self._enter("facts")
            running = [c for c in self._containers.values() if c.status == "running"]
            holding = [c for c in self._containers.values() if c.status in ("running", "created")]  # as the engine's
            holders = {index: c.request.workspace for c in holding for index in c.request.gpu_ids}
        time.sleep(self.probe_seconds)  # nvidia-smi over SSH takes a while: concurrent ups overlap here
        return HostFacts(
            engine_version="27.1.1",
            os="Fake Linux",
            arch="x86_64",
            cpus=16,
            memory_bytes=64 * 1024**3,
            disk_free_bytes=10**11,
            disk_total_bytes=10**12,
            gpus=tuple(replace(g, workspace=holders.get(g.index)) for g in self.gpus),
            workspaces=len(running),
        )

    def running_gpu_ids(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return {c.request.workspace: c.request.gpu_ids for c in self._containers.values() if c.status == "running"}


def test_the_inspectable_fake_is_what_the_daemon_checks_for() -> None:
    assert isinstance(InspectableFake("x"), HostInspectable)
    assert not isinstance(FakeBackend("x"), HostInspectable)


# --- helpers -------------------------------------------------------------------------------------


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def up(
    api: TestClient,
    folder: Path,
    name: str,
    *,
    on: str | None = None,
    edit: dict[str, str] | None = None,
    expect: int | None = 200,
) -> dict[str, Any]:
    """The last frame of `up`; or, when refused before it starts, the error (`expect` None: any error status)."""
    answer = api.post("/v1/workspaces", json={**project_upload(folder, name=name, edit=edit), "on": on})
    if expect != 200:
        assert answer.status_code == expect if expect else answer.status_code >= 400, answer.text
        return dict(answer.json())
    return frames(answer)[-1]


def record(fake: FakeDaemon, name: str) -> Workspace | None:
    return fake.daemon.converger.load(name)


def settle(fake: FakeDaemon, name: str, *, timeout: float = 5) -> Workspace | None:
    deadline = time.monotonic() + timeout
    while fake.daemon.scheduler.busy(name) and time.monotonic() < deadline:
        time.sleep(0.01)
    return record(fake, name)


def events(fake: FakeDaemon, workspace: str | None = None) -> list[dict[str, Any]]:
    return fake.daemon.services.events.query(workspace, limit=1000)


@pytest.fixture
def box() -> FakeBackend:
    return FakeBackend("box", "fake://box")


@pytest.fixture
def fake(tmp_path: Path, box: FakeBackend) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon", extra={"box": box})


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


# --- a host going away and coming back -----------------------------------------------------------


def test_running_workspaces_of_a_backend_that_does_not_answer_are_lost_then_found_again(
    api: TestClient, fake: FakeDaemon, box: FakeBackend, tmp_path: Path
) -> None:
    assert up(api, tmp_path / "here", "here")["workspace"]["backend"] == "local"
    assert up(api, tmp_path / "there", "there", on="box")["workspace"]["backend"] == "box"
    up(api, tmp_path / "idle", "idle", on="box")
    frames(api.post("/v1/workspaces/idle/stop"))
    for name in ("here", "there", "idle"):
        settle(fake, name)  # the reconciler leaves a workspace alone while its converger runs
    port = record(fake, "there").ssh_port  # type: ignore[union-attr]
    assert port is not None

    box.reachable = False
    fake.daemon.reconciler.run_pass()
    fake.daemon.reconciler.run_pass()  # a second pass while it is away changes nothing more
    lost = record(fake, "there")
    assert lost is not None and lost.state == "lost" and lost.desired == "running"
    assert "box does not answer" in (lost.reason or "") and box.url in (lost.reason or "")
    assert lost.ssh_port is None
    assert record(fake, "here").state == "running"  # type: ignore[union-attr]  # other backends: untouched
    assert record(fake, "idle").state == "stopped"  # type: ignore[union-attr]  # only running ones are lost
    said = [e for e in events(fake) if e["kind"] == "reconcile" and e["message"].startswith("backend box:")]
    assert len(said) == 1 and box.url in said[0]["message"]

    box.reachable = True
    fake.daemon.reconciler.run_pass()
    back = record(fake, "there")
    assert back is not None and (back.state, back.reason, back.ssh_port) == ("running", "found running again", port)
    assert record(fake, "idle").state == "stopped"  # type: ignore[union-attr]
    assert any(e["message"] == "backend box answers again" for e in events(fake))
    assert any("lost -> running" in e["message"] for e in events(fake, "there"))


def test_a_container_gone_while_its_host_was_away_is_said_to_be_gone(
    api: TestClient, fake: FakeDaemon, box: FakeBackend, tmp_path: Path
) -> None:
    up(api, tmp_path / "p", "wiped", on="box")
    settle(fake, "wiped")
    box.reachable = False
    fake.daemon.reconciler.run_pass()
    assert record(fake, "wiped").state == "lost"  # type: ignore[union-attr]
    box.reachable = True
    box.vanish("wiped")
    fake.daemon.reconciler.run_pass()
    lost = record(fake, "wiped")
    assert lost is not None and lost.state == "lost"
    assert "does not answer" not in (lost.reason or "") and "devenv start" in (lost.reason or "")


def test_a_workspace_that_failed_because_its_host_was_away_goes_on_when_it_answers(
    api: TestClient, fake: FakeDaemon, box: FakeBackend, tmp_path: Path
) -> None:
    up(api, tmp_path / "p", "patient", on="box")
    frames(api.post("/v1/workspaces/patient/stop"))
    box.reachable = False
    last = frames(api.post("/v1/workspaces/patient/start"))[-1]
    assert last["error"]["code"] == "engine_unreachable"
    failed = settle(fake, "patient")
    assert failed is not None and (failed.state, failed.error_code, failed.desired) == (
        "failed",
        "engine_unreachable",
        "running",
    )
    fake.daemon.reconciler.run_pass()  # still away: nothing to do
    assert settle(fake, "patient").state == "failed"  # type: ignore[union-attr]

    box.reachable = True
    fake.daemon.reconciler.run_pass()
    resumed = settle(fake, "patient")
    assert resumed is not None and resumed.state == "running" and resumed.error_code is None
    assert [w.workspace for w in box.list_workspaces() if w.running] == ["patient"]


def test_a_workspace_that_failed_for_another_reason_is_not_retried(
    api: TestClient, fake: FakeDaemon, box: FakeBackend, tmp_path: Path
) -> None:
    up(api, tmp_path / "p", "broken", on="box")
    frames(api.post("/v1/workspaces/broken/stop"))
    with fake.daemon.converger.sessions.begin() as session:
        session.execute(
            update(Workspace)
            .where(Workspace.name == "broken")
            .values(state="failed", error_code="backend_error", desired="running")
        )
    settle(fake, "broken")
    starts = box.calls["start"]
    fake.daemon.reconciler.run_pass()
    assert settle(fake, "broken").state == "failed"  # type: ignore[union-attr]
    assert box.calls["start"] == starts


# --- GPUs for a container ------------------------------------------------------------------------


def gpu_daemon(tmp_path: Path, gpus: list[Gpu]) -> tuple[FakeDaemon, InspectableFake]:
    local = InspectableFake("local", gpus)
    return fake_daemon(tmp_path / "daemon", local), local


def test_two_ups_at_once_on_one_host_never_get_the_same_gpu(tmp_path: Path) -> None:
    fake, local = gpu_daemon(tmp_path, [gpu(0), gpu(1)])
    local.probe_seconds = 0.3
    uploads = {name: project_upload(tmp_path / name, name=name, edit=GPU_1) for name in ("one", "two")}
    answers: dict[str, Any] = {}
    with TestClient(fake.app, headers=fake.headers) as api:

        def launch(name: str) -> None:
            answers[name] = frames(api.post("/v1/workspaces", json=uploads[name]))[-1]

        threads = [threading.Thread(target=launch, args=(name,)) for name in uploads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert all(answer["workspace"]["state"] == "running" for answer in answers.values()), answers
    assert sorted(local.running_gpu_ids().values()) == [("0",), ("1",)]


def test_the_container_gets_free_gpus_of_the_asked_type_never_ones_taken(tmp_path: Path) -> None:
    fake, local = gpu_daemon(tmp_path, [gpu(0, used=3000), gpu(1), gpu(2), gpu(3), gpu(4, RTX)])
    with TestClient(fake.app, headers=fake.headers) as api:
        first = up(api, tmp_path / "a", "first", edit={"resources:\n": "resources:\n  gpu: A100:2\n"})
        assert first["workspace"]["state"] == "running"
        assert (local.requests[-1].gpu_ids, local.requests[-1].gpu_count, local.requests[-1].gpu_kind) == (
            ("1", "2"),
            2,
            "A100",
        )
        assert any(e["message"] == f"GPUs 1, 2 of local ({A100})" for e in events(fake, "first"))

        refused = up(api, tmp_path / "b", "second", edit={"resources:\n": "resources:\n  gpu: A100:2\n"})
        assert refused["error"]["code"] == "no_capacity"
        assert "host local has 1 free" in refused["error"]["message"]
        assert record(fake, "second") is None  # rolled back: nothing half made

        third = up(api, tmp_path / "c", "third", edit={"resources:\n": "resources:\n  gpu: 1\n"})
        assert third["workspace"]["state"] == "running"
        assert local.requests[-1].gpu_ids == ("3",)
        rtx = up(api, tmp_path / "d", "fourth", edit={"resources:\n": "resources:\n  gpu: rtx:1\n"})
        assert rtx["workspace"]["state"] == "running" and local.requests[-1].gpu_ids == ("4",)
    assert local.running_gpu_ids() == {"first": ("1", "2"), "third": ("3",), "fourth": ("4",)}


def test_a_host_that_lists_no_gpus_leaves_the_choice_to_the_engine(tmp_path: Path) -> None:
    fake, local = gpu_daemon(tmp_path, [])
    with TestClient(fake.app, headers=fake.headers) as api:
        assert up(api, tmp_path / "a", "any", edit=GPU_1)["workspace"]["state"] == "running"
    assert (local.requests[-1].gpu_count, local.requests[-1].gpu_ids) == (1, ())


def test_a_workspace_without_gpus_asks_the_host_nothing(tmp_path: Path) -> None:
    fake, local = gpu_daemon(tmp_path, [gpu(0)])
    with TestClient(fake.app, headers=fake.headers) as api:
        assert up(api, tmp_path / "a", "cpu")["workspace"]["state"] == "running"
    assert (local.requests[-1].gpu_count, local.requests[-1].gpu_ids) == (None, ())
    assert local.calls["facts"] == 0


def test_a_restarted_workspace_does_not_share_gpus_given_away_while_it_was_stopped(tmp_path: Path) -> None:
    fake, local = gpu_daemon(tmp_path, [gpu(0), gpu(1)])
    with TestClient(fake.app, headers=fake.headers) as api:
        up(api, tmp_path / "a", "first", edit=GPU_1)
        assert local.running_gpu_ids() == {"first": ("0",)}
        frames(api.post("/v1/workspaces/first/stop"))
        up(api, tmp_path / "b", "second", edit={"resources:\n": "resources:\n  gpu: 2\n"})
        assert local.running_gpu_ids() == {"second": ("0", "1")}
        frames(api.post("/v1/workspaces/first/start"))  # may refuse (no_capacity) or move to free GPUs
    held = [index for ids in local.running_gpu_ids().values() for index in ids]
    assert len(held) == len(set(held)), local.running_gpu_ids()


# --- up --on -------------------------------------------------------------------------------------


def test_up_on_a_name_runs_there_and_an_unknown_name_is_refused(
    api: TestClient, fake: FakeDaemon, box: FakeBackend, tmp_path: Path
) -> None:
    made = up(api, tmp_path / "p", "remote", on="box")
    assert made["workspace"]["backend"] == "box" and made["workspace"]["state"] == "running"
    assert [w.workspace for w in box.list_workspaces()] == ["remote"] and fake.backend.list_workspaces() == []
    refused = up(api, tmp_path / "q", "nowhere", on="mars", expect=400)
    assert refused["code"] == "usage" and "mars" in refused["message"] and "box" in refused["message"]
    assert record(fake, "nowhere") is None


def test_on_overrides_the_spec_and_an_existing_workspace_stays_where_it_is(
    api: TestClient, fake: FakeDaemon, box: FakeBackend, tmp_path: Path
) -> None:
    spec_says_local = {"name: stay\n": "name: stay\nbackend: local\n"}
    assert up(api, tmp_path / "p", "stay", on="box", edit=spec_says_local)["workspace"]["backend"] == "box"
    assert up(api, tmp_path / "p2", "stay")["workspace"]["backend"] == "box"  # again, without --on
    assert up(api, tmp_path / "p3", "stay", on="auto")["workspace"]["backend"] == "box"
    moved = up(api, tmp_path / "p4", "stay", on="local", expect=400)
    assert moved["code"] == "usage" and "runs on backend box" in moved["message"]
    assert record(fake, "stay").backend == "box"  # type: ignore[union-attr]
    assert [w.workspace for w in box.list_workspaces()] == ["stay"] and fake.backend.list_workspaces() == []


@pytest.fixture
def hosts_fake(tmp_path: Path) -> tuple[FakeDaemon, InspectableFake, InspectableFake]:
    full = InspectableFake("box-a", [gpu(0, used=20000), gpu(1, used=20000)])  # someone else's training run
    roomy = InspectableFake("box-b", [gpu(0), gpu(1)])
    return fake_daemon(tmp_path / "daemon", extra={"box-a": full, "box-b": roomy}), full, roomy


def test_on_auto_places_a_gpu_workspace_where_gpus_are_free(
    hosts_fake: tuple[FakeDaemon, InspectableFake, InspectableFake], tmp_path: Path
) -> None:
    fake, full, roomy = hosts_fake
    with TestClient(fake.app, headers=fake.headers) as api:
        placed = up(api, tmp_path / "p", "trainer", on="auto", edit=GPU_1)
        assert placed["workspace"]["backend"] == "box-b" and placed["workspace"]["state"] == "running"
        assert roomy.requests[-1].gpu_ids == ("0",) and full.requests == []
        assert any(e["message"].startswith("placed on box-b (--on auto, GPUs 1") for e in events(fake, "trainer"))
        again = up(api, tmp_path / "q", "second", on="auto", edit=GPU_1)
        assert again["workspace"]["backend"] == "box-b" and roomy.requests[-1].gpu_ids == ("1",)
        refused = up(api, tmp_path / "r", "third", on="auto", edit=GPU_1, expect=None)
        assert refused["code"] == "no_capacity"
        assert "box-a: 0 free of 2" in refused["message"] and "box-b: 0 free of 2" in refused["message"]
        assert "local: unreachable (this backend cannot describe its machine)" in refused["message"]
        assert record(fake, "third") is None


def test_on_auto_is_best_fit_and_follows_what_is_taken(tmp_path: Path) -> None:
    small = InspectableFake("small", [gpu(0)])
    big = InspectableFake("big", [gpu(0), gpu(1), gpu(2), gpu(3)])
    fake = fake_daemon(tmp_path / "daemon", extra={"small": small, "big": big})
    with TestClient(fake.app, headers=fake.headers) as api:
        assert up(api, tmp_path / "a", "a", on="auto", edit=GPU_1)["workspace"]["backend"] == "small"
        assert up(api, tmp_path / "b", "b", on="auto", edit=GPU_1)["workspace"]["backend"] == "big"


def test_backend_auto_in_the_spec_places_too_and_an_unreachable_host_is_skipped(
    hosts_fake: tuple[FakeDaemon, InspectableFake, InspectableFake], tmp_path: Path
) -> None:
    fake, full, roomy = hosts_fake
    full.gpus = [gpu(0)]  # box-a would be the best fit, but it does not answer
    full.reachable = False
    with TestClient(fake.app, headers=fake.headers) as api:
        edit = {**GPU_1, "name: spec-auto\n": "name: spec-auto\nbackend: auto\n"}
        assert up(api, tmp_path / "p", "spec-auto", edit=edit)["workspace"]["backend"] == "box-b"
    assert roomy.requests[-1].gpu_ids == ("0",) and full.calls["create"] == 0


def test_on_auto_without_gpus_goes_to_the_host_running_fewest(
    hosts_fake: tuple[FakeDaemon, InspectableFake, InspectableFake], tmp_path: Path
) -> None:
    fake, full, roomy = hosts_fake
    with TestClient(fake.app, headers=fake.headers) as api:
        up(api, tmp_path / "a", "one", on="box-a")
        assert up(api, tmp_path / "b", "two", on="auto")["workspace"]["backend"] == "box-b"
        assert up(api, tmp_path / "c", "three", on="auto")["workspace"]["backend"] == "box-a"  # 1 each: by name
    assert sorted(w.workspace for w in full.list_workspaces()) == ["one", "three"]
    assert [w.workspace for w in roomy.list_workspaces()] == ["two"]


# --- /v1/hosts -----------------------------------------------------------------------------------


@pytest.fixture
def people(fake: FakeDaemon) -> dict[str, dict[str, str]]:
    """tester (not an admin) and root2 (an admin token)."""
    admin = fake.daemon.services.tokens.create("root2", admin=True)
    return {"tester": fake.headers, "root2": {"Authorization": f"Bearer {admin}"}}


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("ids")
    made = {}
    for name, passphrase in (("plain", ""), ("locked", "s3cret passphrase")):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(folder / name)],
            check=True,
            capture_output=True,
        )
        made[name] = (folder / name).read_text()
    made["pub"] = (folder / "plain.pub").read_text()
    return made


def hosts(fake: FakeDaemon) -> Hosts:
    assert fake.daemon.services.hosts is not None
    return fake.daemon.services.hosts


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


class Doorbell:
    """A port on 127.0.0.1 that counts who connects (and hangs up on them at once)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.rings = 0
        threading.Thread(target=self._answer, daemon=True).start()

    def _answer(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.rings += 1
            conn.close()


@pytest.fixture
def doorbell() -> Iterator[Doorbell]:
    bell = Doorbell()
    yield bell
    bell.listener.close()


def test_anyone_may_list_hosts(api: TestClient, people: dict[str, dict[str, str]], tmp_path: Path) -> None:
    for headers in people.values():
        answer = api.get("/v1/hosts", headers=headers)
        assert answer.status_code == 200, answer.text
        rows = {row["name"]: row for row in answer.json()["items"]}
        assert set(rows) == {"local", "box"}
        assert rows["box"]["reachable"] is False and rows["box"]["error"] == "this backend cannot describe its machine"
        assert api.get("/v1/hosts?probe=false", headers=headers).status_code == 200


def test_listing_shows_facts_and_who_holds_gpus(tmp_path: Path) -> None:
    inspectable = InspectableFake("gpu-box", [gpu(0), gpu(1, used=4000)])
    fake = fake_daemon(tmp_path / "daemon", extra={"gpu-box": inspectable})
    with TestClient(fake.app, headers=fake.headers) as api:
        up(api, tmp_path / "p", "trainer", on="gpu-box", edit=GPU_1)
        rows = {row["name"]: row for row in api.get("/v1/hosts").json()["items"]}
    row = rows["gpu-box"]
    assert row["reachable"] is True and row["error"] is None and row["workspaces"] == 1
    assert row["facts"]["free_gpus"] == 0 and row["facts"]["workspaces"] == 1
    assert [(g["index"], g["workspace"]) for g in row["facts"]["gpus"]] == [("0", "trainer"), ("1", None)]


def test_adding_and_removing_hosts_is_for_admins_only(
    api: TestClient, fake: FakeDaemon, people: dict[str, dict[str, str]], identities: dict[str, str], doorbell: Doorbell
) -> None:
    body = {"name": "gpu-box", "url": f"ssh://op@127.0.0.1:{doorbell.port}", "identity": identities["plain"]}
    for attempt in (body, {**body, "name": "auto"}):  # refused before anything is looked at
        refused = api.post("/v1/hosts", json=attempt, headers=people["tester"])
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert "admin" in refused.json()["message"]
    for name in ("box", "nothing"):
        refused = api.delete(f"/v1/hosts/{name}", headers=people["tester"])
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert doorbell.rings == 0
    assert "box" in fake.daemon.services.workspaces.backends.entries


@pytest.mark.parametrize(
    ("change", "status", "code", "words"),
    [
        ({"name": "auto"}, 400, "usage", "auto"),
        ({"name": "aws"}, 400, "usage", "aws"),
        ({"name": "Gpu_Box"}, 400, "usage", "Gpu_Box"),
        ({"name": "x" * 64}, 400, "usage", "at most 63"),
        ({"name": "local"}, 409, "file_exists", "local"),
        ({"name": "box"}, 409, "file_exists", "box"),
        ({"url": "http://op@gpu-box"}, 400, "usage", "ssh://"),
        ({"url": "ssh://gpu-box"}, 400, "usage", "user"),
        ({"url": "ssh://op:pa55word@gpu-box"}, 400, "usage", "password"),
        ({"identity": "pub"}, 400, "usage", "not a private key"),
        ({"identity": "not a key"}, 400, "usage", "not a private key"),
        ({"identity": "locked"}, 400, "usage", "passphrase"),
    ],
)
def test_a_bad_add_is_refused_before_connecting(
    api: TestClient,
    fake: FakeDaemon,
    people: dict[str, dict[str, str]],
    identities: dict[str, str],
    doorbell: Doorbell,
    change: dict[str, str],
    status: int,
    code: str,
    words: str,
) -> None:
    body = {"name": "gpu-box", "url": f"ssh://op@127.0.0.1:{doorbell.port}", "identity": identities["plain"], **change}
    body["identity"] = identities.get(body["identity"], body["identity"])
    answer = api.post("/v1/hosts", json=body, headers=people["root2"])
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and words in answer.json()["message"]
    assert error_from_payload(answer.json()).code == code
    assert "pa55word" not in answer.text and identities["plain"].splitlines()[1] not in answer.text
    assert doorbell.rings == 0  # nothing was contacted
    listed = [row["name"] for row in api.get("/v1/hosts?probe=false").json()["items"]]
    assert listed == ["local", "box"]  # and nothing was stored (the backend called box is the daemon's own)
    with fake.daemon.converger.sessions() as session:
        assert session.scalars(select(Host)).all() == []


def test_a_host_that_does_not_answer_is_not_added(
    api: TestClient,
    fake: FakeDaemon,
    tmp_path: Path,
    people: dict[str, dict[str, str]],
    identities: dict[str, str],
    doorbell: Doorbell,
) -> None:
    for url in (f"ssh://op@127.0.0.1:{closed_port()}", f"ssh://op@127.0.0.1:{doorbell.port}"):  # refused; hung up
        body = {"name": "gpu-box", "url": url, "identity": identities["plain"]}
        started = time.monotonic()
        answer = api.post("/v1/hosts", json=body, headers=people["root2"])
        assert time.monotonic() - started < 5
        assert answer.status_code == 502, answer.text
        assert answer.json()["code"] == "engine_unreachable" and url in answer.json()["message"]
        assert "gpu-box" not in [row["name"] for row in api.get("/v1/hosts").json()["items"]]
        assert "gpu-box" not in [row["name"] for row in api.get("/v1/backends").json()["items"]]
    assert doorbell.rings == 1  # the second one did connect: the checks before it had passed
    with fake.daemon.converger.sessions() as session:
        assert session.scalars(select(Host)).all() == []
    assert not (tmp_path / "daemon" / "known_hosts").exists()


def stored_host(fake: FakeDaemon, name: str, url: str, identity: str) -> FakeBackend:
    """A host as `add` leaves it (row, backend, pinned key), without an SSH server to add it from."""
    service = hosts(fake)
    with fake.daemon.converger.sessions.begin() as session:
        session.add(
            Host(
                name=name,
                url=url,
                kind="ssh",
                identity=service.box.encrypt(identity.encode()),
                public_key="ssh-ed25519 AAAA",
                added_by="root2",
            )
        )
    backend = FakeBackend(name, url)
    service.backends.add(BackendEntry(name, "docker", url, backend))
    service.known_hosts.add(parse_target(url), load_private_key(identity))
    return backend


def test_an_admin_removes_a_host_and_its_pinned_key(
    api: TestClient, fake: FakeDaemon, tmp_path: Path, people: dict[str, dict[str, str]], identities: dict[str, str]
) -> None:
    stored_host(fake, "gpu-box", "ssh://op@gpu-box:2222", identities["plain"])
    stored_host(fake, "gpu-two", "ssh://op@gpu-two", identities["plain"])
    up(api, tmp_path / "p", "busy", on="gpu-box")
    refused = api.delete("/v1/hosts/gpu-box", headers=people["root2"])
    assert refused.status_code == 400 and refused.json()["code"] == "usage" and "busy" in refused.json()["message"]
    frames(api.delete("/v1/workspaces/busy"))
    removed = api.delete("/v1/hosts/gpu-box", headers=people["root2"])
    assert removed.status_code == 200 and removed.json() == {"removed": "gpu-box"}
    assert "gpu-box" not in [row["name"] for row in api.get("/v1/backends").json()["items"]]
    assert "[gpu-box]:2222" not in hosts(fake).known_hosts.path.read_text()
    assert "gpu-two" in hosts(fake).known_hosts.path.read_text()  # another host's pin stays
    assert any("host gpu-box removed" in e["message"] and "1 pinned key" in e["message"] for e in events(fake))


def test_removing_an_unknown_host_is_not_found(api: TestClient, people: dict[str, dict[str, str]]) -> None:
    answer = api.delete("/v1/hosts/nothing", headers=people["root2"])
    assert answer.json()["code"] == "host_not_found"
    assert answer.status_code == 404


def test_host_ls_names_only_the_workspaces_the_caller_may_see(tmp_path: Path) -> None:
    fake, _local = gpu_daemon(tmp_path, [gpu(0), gpu(1)])
    other = {"Authorization": f"Bearer {fake.daemon.services.tokens.create('mallory')}"}
    with TestClient(fake.app, headers=fake.headers) as api:
        assert up(api, tmp_path / "a", "secretproj", edit=GPU_1)["workspace"]["state"] == "running"

        def holders(headers: dict[str, str]) -> list[str]:
            rows = api.get("/v1/hosts", headers=headers).json()["items"]
            return [g["workspace"] for row in rows for g in (row["facts"] or {}).get("gpus", []) if g["workspace"]]

        assert holders(fake.headers) == ["secretproj"]  # the owner sees their own
        assert holders(other) == ["(another person's)"]  # taken, but not by whom
        assert "secretproj" not in api.get("/v1/hosts", headers=other).text
