"""The daemon's side of a backend that makes a machine per workspace (Provisioner), over fakes: a machine
before the build, everything then on that machine, parked on stop, released on rm and on a failed first up,
priced in listings, and `--on auto` falling back to it when no host has the GPUs free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.backends.base import Backend, Gpu, HostFacts, Provisioner
from devenv.errors import BackendError
from devenv.progress import Progress, emit
from devenv.spec.units import GpuRequest
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import FakeBackend


class Machines(FakeBackend):
    """A fake cloud: one FakeBackend "machine" per workspace, made by provision, with a price."""

    def __init__(self) -> None:
        super().__init__("cloud", "fake://cloud")
        self.machines: dict[str, FakeBackend] = {}
        self.parked: dict[str, bool] = {}
        self.steps: list[tuple[str, str]] = []
        self.fail_build = False

    def provision(self, workspace: str, gpu: GpuRequest | None, progress: Progress | None = None) -> None:
        self.steps.append(("provision", workspace))
        emit(progress, "phase", f"launching a machine for {workspace} ({gpu})")
        if workspace not in self.machines:
            machine = FakeBackend("cloud", f"fake://cloud/{workspace}")
            if self.fail_build:

                def refuse(*_args: Any, **_kwargs: Any) -> Any:
                    raise BackendError("the machine's engine refused the build")

                machine.build = refuse  # type: ignore[method-assign]
            self.machines[workspace] = machine
        self.parked[workspace] = False

    def host(self, workspace: str) -> Backend:
        if workspace not in self.machines or self.parked.get(workspace):
            raise BackendError(f"{workspace} has no running machine")
        return self.machines[workspace]

    def park(self, workspace: str) -> None:
        self.steps.append(("park", workspace))
        self.parked[workspace] = True

    def release(self, workspace: str, *, keep_volume: bool) -> None:
        self.steps.append(("release" + (" keep" if keep_volume else ""), workspace))
        self.machines.pop(workspace, None)

    def price(self, workspace: str) -> float | None:
        return 1.006 if workspace in self.machines and not self.parked.get(workspace) else None

    def list_workspaces(self) -> list[Any]:
        return [
            seen
            for name, machine in self.machines.items()
            if not self.parked.get(name)
            for seen in machine.list_workspaces()
        ]


class Busy(FakeBackend):
    """A host whose only GPU is taken by someone else's job."""

    def facts(self) -> HostFacts:
        busy = Gpu(index="0", name="NVIDIA A100", memory_total_mib=81920, memory_used_mib=60000, utilization_percent=99)
        return HostFacts(
            engine_version="27",
            os="fake",
            arch="x86_64",
            cpus=8,
            memory_bytes=1,
            disk_free_bytes=1,
            disk_total_bytes=1,
            gpus=(busy,),
        )


@pytest.fixture
def cloud() -> Machines:
    return Machines()


@pytest.fixture
def fake(tmp_path: Path, cloud: Machines) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon", extra={"cloud": cloud, "box": Busy("box", "fake://box")})


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def up(api: TestClient, folder: Path, name: str, on: str, edit: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return frames(api.post("/v1/workspaces", json={**project_upload(folder, name=name, edit=edit), "on": on}))


def test_a_machine_first_then_everything_on_it_parked_on_stop_released_on_rm(
    fake: FakeDaemon, cloud: Machines, tmp_path: Path
) -> None:
    assert isinstance(cloud, Provisioner)
    with TestClient(fake.app, headers=fake.headers) as api:
        said = up(api, tmp_path / "p", "trainer", "cloud")
        assert said[-1]["workspace"]["state"] == "running" and said[-1]["workspace"]["backend"] == "cloud"
        assert any("launching a machine for trainer" in str(frame) for frame in said)
        machine = cloud.machines["trainer"]
        assert [seen.workspace for seen in machine.list_workspaces()] == ["trainer"]  # built and run there
        assert api.get("/v1/workspaces/trainer").json()["price_per_hour"] == 1.006
        assert api.get("/v1/workspaces").json()["items"][0]["price_per_hour"] == 1.006

        frames(api.post("/v1/workspaces/trainer/stop"))
        assert ("park", "trainer") in cloud.steps and machine.list_workspaces()[0].status == "exited"
        stopped = api.get("/v1/workspaces/trainer").json()
        assert stopped["state"] == "stopped" and stopped["price_per_hour"] is None

        frames(api.post("/v1/workspaces/trainer/start"))
        assert cloud.steps.count(("provision", "trainer")) == 2
        assert api.get("/v1/workspaces/trainer").json()["state"] == "running"

        frames(api.delete("/v1/workspaces/trainer?keep_volume=true"))
        assert ("release keep", "trainer") in cloud.steps and "trainer" not in cloud.machines
        assert api.get("/v1/workspaces/trainer").status_code == 404


def test_a_first_up_that_fails_on_the_machine_releases_it(fake: FakeDaemon, cloud: Machines, tmp_path: Path) -> None:
    cloud.fail_build = True
    with TestClient(fake.app, headers=fake.headers) as api:
        said = up(api, tmp_path / "p", "doomed", "cloud")
    assert said[-1]["error"]["message"] == "the machine's engine refused the build"
    assert ("release", "doomed") in cloud.steps and cloud.machines == {}


def test_on_auto_goes_to_the_cloud_when_no_host_has_the_gpus_free(
    fake: FakeDaemon, cloud: Machines, tmp_path: Path
) -> None:
    with TestClient(fake.app, headers=fake.headers) as api:
        said = up(api, tmp_path / "p", "wants-gpu", "auto", edit={"resources:\n": "resources:\n  gpu: A100:1\n"})
        assert said[-1]["workspace"]["backend"] == "cloud"
        placed = [
            event["message"]
            for event in fake.daemon.services.events.query("wants-gpu", limit=100)
            if event["message"].startswith("placed on")
        ]
        assert placed and "box: 0 free of 1" in placed[0]
        no_gpu = up(api, tmp_path / "q", "no-gpu", "auto")
        assert no_gpu[-1]["workspace"]["backend"] in ("local", "box")  # a host, never a new machine
