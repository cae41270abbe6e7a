"""`--on auto` and GPU choice: best fit by free GPUs of the asked type, held or busy GPUs never given twice."""

from __future__ import annotations

import pytest

from devenv.backends.base import Gpu, HostFacts
from devenv.daemon.services.placement import choose_gpus, choose_host, matching
from devenv.errors import NoCapacity
from devenv.spec.units import GpuRequest

A100 = "NVIDIA A100-SXM4-80GB"
RTX = "NVIDIA GeForce RTX 4090"


def gpu(index: int, name: str = A100, *, used: int = 0, util: int = 0, workspace: str | None = None) -> Gpu:
    return Gpu(
        index=str(index),
        name=name,
        memory_total_mib=81920,
        memory_used_mib=used,
        utilization_percent=util,
        workspace=workspace,
    )


def facts(*gpus: Gpu, workspaces: int = 0, note: str = "") -> HostFacts:
    return HostFacts(
        engine_version="27.1.1",
        os="Ubuntu 22.04.4 LTS",
        arch="x86_64",
        cpus=64,
        memory_bytes=512 * 1024**3,
        disk_free_bytes=10**12,
        disk_total_bytes=2 * 10**12,
        gpus=tuple(gpus),
        gpu_note=note,
        workspaces=workspaces,
    )


def free(count: int, name: str = A100, *, start: int = 0) -> list[Gpu]:
    return [gpu(start + i, name) for i in range(count)]


@pytest.mark.parametrize(
    ("kind", "name", "matches"),
    [
        ("A100", A100, True),
        ("a100", A100, True),
        ("A100-SXM4", A100, True),
        ("H100", A100, False),
        ("4090", RTX, True),
        ("rtx", RTX, True),
        ("A100", RTX, False),
        (None, RTX, True),
        ("any", RTX, True),
        ("ANY", A100, True),
        ("", A100, True),
    ],
)
def test_a_type_matches_gpus_whose_name_holds_it_ignoring_case(kind: str | None, name: str, matches: bool) -> None:
    assert matching(gpu(0, name), kind) is matches


def test_best_fit_goes_to_the_host_with_fewest_free_that_fit() -> None:
    probed = {"big": (facts(*free(8)), None), "small": (facts(*free(2)), None), "tiny": (facts(*free(1)), None)}
    assert choose_host(GpuRequest(count=2), probed) == "small"
    assert choose_host(GpuRequest(count=1), probed) == "tiny"
    assert choose_host(GpuRequest(count=3), probed) == "big"


def test_held_and_busy_gpus_do_not_count_as_free() -> None:
    crowded = facts(gpu(0, workspace="alice-ws"), gpu(1, used=4000), gpu(2, util=80), gpu(3))  # 1 free of 4
    roomy = facts(*free(3))
    probed = {"crowded": (crowded, None), "roomy": (roomy, None)}
    assert choose_host(GpuRequest(count=1), probed) == "crowded"
    assert choose_host(GpuRequest(count=2), probed) == "roomy"


def test_only_gpus_of_the_asked_type_count() -> None:
    probed = {"gaming": (facts(*free(4, RTX)), None), "lab": (facts(*free(1, A100), *free(3, RTX, start=1)), None)}
    assert choose_host(GpuRequest(type="a100", count=1), probed) == "lab"
    assert choose_host(GpuRequest(type="RTX", count=4), probed) == "gaming"
    assert choose_host(GpuRequest(type="4090", count=3), probed) == "lab"  # 3 RTX free there, fewer than 4
    with pytest.raises(NoCapacity):
        choose_host(GpuRequest(type="A100", count=2), probed)


def test_equal_fit_goes_to_the_host_running_fewer_workspaces_then_by_name() -> None:
    probed = {
        "b-busy": (facts(*free(2), workspaces=3), None),
        "c-calm": (facts(*free(2), workspaces=1), None),
        "a-calm": (facts(*free(2), workspaces=1), None),
    }
    assert choose_host(GpuRequest(count=2), probed) == "a-calm"


def test_without_a_gpu_request_the_least_busy_host_wins() -> None:
    probed = {
        "gpu-box": (facts(*free(4), workspaces=2), None),
        "cpu-a": (facts(workspaces=1), None),
        "cpu-b": (facts(workspaces=0), None),
        "down": (None, "connection refused"),
    }
    assert choose_host(None, probed) == "cpu-b"
    probed["cpu-b"] = (facts(workspaces=1), None)
    assert choose_host(None, probed) == "cpu-a"  # a tie: by name


def test_unreachable_hosts_are_never_chosen() -> None:
    probed = {"down": (None, "the SSH host ssh://op@down does not answer (after 20.0s)"), "up": (facts(*free(4)), None)}
    assert choose_host(GpuRequest(count=1), probed) == "up"
    assert choose_host(None, {"down": probed["down"], "up": (facts(workspaces=9), None)}) == "up"


def test_when_nothing_fits_the_error_names_every_host_and_what_it_has() -> None:
    probed = {
        "box-a": (facts(gpu(0, workspace="w1"), gpu(1)), None),
        "box-b": (facts(note="no NVIDIA GPU (nvidia-smi not found)"), None),
        "box-c": (None, "the SSH host ssh://op@box-c does not answer (timed out)"),
    }
    with pytest.raises(NoCapacity) as caught:
        choose_host(GpuRequest(type="A100", count=2), probed)
    message = caught.value.message
    assert "box-a: 1 free of 2" in message
    assert "box-b: 0 free of 0 (no NVIDIA GPU (nvidia-smi not found))" in message
    assert "box-c: unreachable (the SSH host ssh://op@box-c does not answer (timed out))" in message
    assert "2" in message and "A100" in message
    assert caught.value.hint and "devenv host add" in caught.value.hint
    assert caught.value.code == "no_capacity"


def test_when_no_host_answers_a_cpu_workspace_has_nowhere_to_go() -> None:
    with pytest.raises(NoCapacity) as caught:
        choose_host(None, {"box-a": (None, "refused"), "box-b": (None, "timed out")})
    assert "box-a: unreachable (refused)" in caught.value.message
    assert "box-b: unreachable (timed out)" in caught.value.message
    with pytest.raises(NoCapacity) as nothing:
        choose_host(GpuRequest(count=1), {})
    assert "no hosts" in nothing.value.message


def test_choose_gpus_gives_free_ones_skipping_held_and_busy() -> None:
    host = facts(
        gpu(0, workspace="alice-ws"), gpu(1, used=2048), gpu(2, util=50), gpu(3), gpu(4), gpu(5, used=512, util=9)
    )  # 5: the driver's own few MiB and a blip of use count as idle
    assert choose_gpus(host, GpuRequest(count=1), "box") == ("3",)
    assert choose_gpus(host, GpuRequest(count=3), "box") == ("3", "4", "5")
    with pytest.raises(NoCapacity) as caught:
        choose_gpus(host, GpuRequest(count=4), "box")
    assert "host box has 3 free" in caught.value.message and "of 6" in caught.value.message
    assert "asks for 4" in caught.value.message


def test_choose_gpus_gives_only_the_asked_type() -> None:
    host = facts(gpu(0, RTX), gpu(1, A100, workspace="w"), gpu(2, A100), gpu(3, RTX))
    assert choose_gpus(host, GpuRequest(type="A100", count=1), "box") == ("2",)
    assert choose_gpus(host, GpuRequest(type="rtx", count=2), "box") == ("0", "3")
    with pytest.raises(NoCapacity):
        choose_gpus(host, GpuRequest(type="A100", count=2), "box")
    with pytest.raises(NoCapacity):
        choose_gpus(facts(), GpuRequest(count=1), "box")
