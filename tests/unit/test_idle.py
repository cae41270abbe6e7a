"""devenv.daemon.background.idle (parse_probe, assess) and the in-image idle probe's fact gathering, without Docker."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import stat
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devenv.daemon.background.idle import Assessment, IdleSample, IdleThresholds, assess, parse_probe
from devenv.errors import BackendError
from devenv.resources import images_dir

T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z
THRESHOLDS = IdleThresholds()


def iso(clock: float) -> str:
    return datetime.fromtimestamp(clock, UTC).isoformat().replace("+00:00", "Z")


def probe_json(**overrides: Any) -> str:
    data: dict[str, Any] = {"clock": T0, "ssh_sessions": 0, "jupyter": None, "cpu_usec": 1_000_000, "gpus": None}
    data.update(overrides)
    return json.dumps(data)


def jupyter_state(*states: str, last_activity: float = T0 - 3600) -> dict[str, Any]:
    kernels = [{"id": f"k{i}", "execution_state": s, "last_activity": iso(last_activity)} for i, s in enumerate(states)]
    return {"kernels": kernels, "last_activity": iso(last_activity)}


def sample(**overrides: Any) -> IdleSample:
    fields: dict[str, Any] = {
        "clock": T0,
        "ssh_sessions": 0,
        "jupyter_running": True,
        "busy_kernels": 0,
        "jupyter_last_activity": datetime.fromtimestamp(T0 - 3600, UTC),
        "cpu_usec": 1_000_000,
        "gpu_utilization": None,
    }
    fields.update(overrides)
    return IdleSample(**fields)


def pair(cpu_percent: float = 0.5, interval: float = 60.0, **current: Any) -> tuple[IdleSample, IdleSample]:
    """Two samples `interval` s apart with `cpu_percent` of one core used in between."""
    previous = sample()
    used = int(cpu_percent / 100 * interval * 1e6)
    later = {"clock": T0 + interval, "cpu_usec": previous.cpu_usec + used, **current}
    return previous, replace(previous, **later)


def idle(previous: IdleSample | None, current: IdleSample, thresholds: IdleThresholds = THRESHOLDS) -> Assessment:
    return assess(previous, current, thresholds)


# ---- parse_probe ----


def test_parse_a_quiet_workspace_without_jupyter_or_gpus() -> None:
    parsed = parse_probe(probe_json() + "\n")
    assert parsed == IdleSample(
        clock=T0,
        ssh_sessions=0,
        jupyter_running=False,
        busy_kernels=0,
        jupyter_last_activity=None,
        cpu_usec=1_000_000,
        gpu_utilization=None,
    )


def test_parse_counts_busy_and_starting_kernels() -> None:
    parsed = parse_probe(probe_json(jupyter=jupyter_state("busy", "idle", "starting", "dead")))
    assert parsed.jupyter_running
    assert parsed.busy_kernels == 2
    assert parsed.jupyter_last_activity == datetime.fromtimestamp(T0 - 3600, UTC)


def test_parse_jupyter_timestamps_are_timezone_aware() -> None:
    naive = {"kernels": [], "last_activity": "2024-06-01T11:00:00.123456"}
    parsed = parse_probe(probe_json(jupyter=naive))
    assert parsed.jupyter_last_activity == datetime(2024, 6, 1, 11, 0, 0, 123456, tzinfo=UTC)
    zulu = parse_probe(probe_json(jupyter={"kernels": [], "last_activity": "2024-06-01T11:00:00.5Z"}))
    assert zulu.jupyter_last_activity is not None and zulu.jupyter_last_activity.tzinfo is not None


def test_parse_jupyter_without_last_activity() -> None:
    parsed = parse_probe(probe_json(jupyter={"kernels": [], "last_activity": None}))
    assert parsed.jupyter_running and parsed.jupyter_last_activity is None


def test_parse_gpus_and_errors() -> None:
    parsed = parse_probe(probe_json(gpus=[97, 0]))
    assert parsed.gpu_utilization == [97, 0]
    assert parse_probe(probe_json(gpus=[])).gpu_utilization == []
    failing = parse_probe(
        probe_json(
            gpus=[],
            gpu_error="nvidia-smi exited 9: NVML mismatch",
            jupyter_error="JupyterLab answered HTTP 403 Forbidden",
        )
    )
    assert failing.gpu_error == "nvidia-smi exited 9: NVML mismatch"
    assert failing.jupyter_error == "JupyterLab answered HTTP 403 Forbidden"


def test_parse_takes_the_last_line_and_ignores_noise_before_it() -> None:
    parsed = parse_probe("some warning a library printed\n" + probe_json(ssh_sessions=2) + "\n\n")
    assert parsed.ssh_sessions == 2


def test_parse_accepts_a_null_cpu_figure() -> None:
    assert parse_probe(probe_json(cpu_usec=None)).cpu_usec is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("", "no output", id="empty"),
        pytest.param("   \n", "no output", id="blank"),
        pytest.param("OCI runtime exec failed: exec failed", "not JSON", id="not-json"),
        pytest.param('{"clock": 1.0, "ssh_sessions": ', "not JSON", id="truncated"),
        pytest.param("[1, 2]", "not a JSON object", id="list"),
        pytest.param(probe_json(clock=None), "no clock", id="no-clock"),
        pytest.param(probe_json(clock="now"), "no clock", id="clock-string"),
        pytest.param(probe_json(clock=True), "no clock", id="clock-bool"),
        pytest.param(probe_json(ssh_sessions=-1), "ssh_sessions", id="ssh-negative"),
        pytest.param(probe_json(ssh_sessions="1"), "ssh_sessions", id="ssh-string"),
        pytest.param(probe_json(cpu_usec=1.5), "cpu_usec", id="cpu-float"),
        pytest.param(probe_json(gpus="97"), "gpus", id="gpus-string"),
        pytest.param(probe_json(gpus=["97"]), "gpus", id="gpus-strings"),
        pytest.param(probe_json(jupyter={"last_activity": None}), "kernel list", id="jupyter-no-kernels"),
        pytest.param(probe_json(jupyter={"kernels": ["k0"], "last_activity": None}), "kernel is not", id="kernel"),
        pytest.param(probe_json(jupyter={"kernels": [], "last_activity": "yesterday"}), "ISO", id="bad-timestamp"),
    ],
)
def test_bad_probe_output_is_a_backend_error(text: str, needle: str) -> None:
    with pytest.raises(BackendError) as raised:
        parse_probe(text)
    assert needle in raised.value.message
    assert "idle probe" in raised.value.message


def test_bad_output_is_quoted_but_shortened() -> None:
    with pytest.raises(BackendError) as raised:
        parse_probe("x" * 5000)
    assert len(raised.value.message) < 400


# ---- assess: what keeps a workspace active ----


def test_quiet_workspace_is_idle_with_a_summary() -> None:
    verdict = idle(*pair(cpu_percent=0.4))
    assert verdict == Assessment(
        active=False, reasons=[], summary="no SSH session, no busy kernel, CPU 0.4% < 10%, no GPU"
    )


def test_summary_without_jupyter_and_with_quiet_gpus() -> None:
    verdict = idle(*pair(cpu_percent=0.0, jupyter_running=False, jupyter_last_activity=None, gpu_utilization=[0, 3]))
    assert not verdict.active
    assert verdict.summary == "no SSH session, no Jupyter, CPU 0.0% < 10%, GPU max 3% < 5%"


def test_first_sample_is_active_because_cpu_is_not_measured_yet() -> None:
    verdict = idle(None, sample())
    assert verdict.active
    assert verdict.reasons == ["first sample: CPU not measured yet"]


@pytest.mark.parametrize("which", ["previous", "current"])
def test_no_cpu_figure_is_active(which: str) -> None:
    previous, current = pair()
    if which == "previous":
        previous = replace(previous, cpu_usec=None)
    else:
        current = replace(current, cpu_usec=None)
    verdict = idle(previous, current)
    assert verdict.active
    assert any("CPU not measured yet" in reason for reason in verdict.reasons)


@pytest.mark.parametrize("count, reason", [(1, "1 SSH session"), (2, "2 SSH sessions")])
def test_any_ssh_session_is_active(count: int, reason: str) -> None:
    verdict = idle(*pair(ssh_sessions=count))
    assert verdict.active
    assert verdict.reasons == [reason]
    assert verdict.summary == f"active: {reason}"


def test_busy_kernel_is_active() -> None:
    verdict = idle(*pair(busy_kernels=1))
    assert verdict.active and verdict.reasons == ["kernel busy"]
    assert idle(*pair(busy_kernels=3)).reasons == ["3 kernels busy"]


def test_a_kernel_busy_for_hours_stays_active() -> None:
    """A ten-hour cell on a quiet CPU (waiting on I/O, or on a GPU the probe cannot see) is still work;
    the kernel's own last_activity (when the cell started) being long ago changes nothing."""
    previous = sample(busy_kernels=1, jupyter_last_activity=datetime.fromtimestamp(T0 - 10 * 3600, UTC))
    for hour in range(1, 12):
        current = replace(previous, clock=previous.clock + 3600, cpu_usec=previous.cpu_usec + 1000)
        verdict = idle(previous, current)
        assert verdict.active, f"hour {hour}: {verdict}"
        assert verdict.reasons == ["kernel busy"]
        previous = current


def test_jupyter_use_since_the_previous_sample_is_active() -> None:
    previous, current = pair(jupyter_last_activity=datetime.fromtimestamp(T0 + 48, UTC))
    verdict = idle(previous, current)
    assert verdict.active
    assert verdict.reasons == ["Jupyter used 12 s ago"]


def test_jupyter_use_before_the_previous_sample_is_not_active() -> None:
    previous, current = pair(jupyter_last_activity=datetime.fromtimestamp(T0 - 1, UTC))
    assert not idle(previous, current).active


def test_unreadable_jupyter_is_active() -> None:
    verdict = idle(*pair(jupyter_running=False, jupyter_error="JupyterLab unreachable: timed out"))
    assert verdict.active
    assert verdict.reasons == ["Jupyter not readable: JupyterLab unreachable: timed out"]


@pytest.mark.parametrize(
    ("cpu", "active", "text"),
    [
        (85.0, True, "CPU 85% >= 10%"),
        (10.0, True, "CPU 10% >= 10%"),
        (9.9, False, "CPU 9.9% < 10%"),
        (250.0, True, "CPU 250% >= 10%"),  # several cores
    ],
)
def test_cpu_threshold(cpu: float, active: bool, text: str) -> None:
    verdict = idle(*pair(cpu_percent=cpu))
    assert verdict.active is active
    assert text in (verdict.reasons if active else verdict.summary.split(", "))


def test_cpu_is_averaged_over_the_time_between_samples() -> None:
    previous = sample(cpu_usec=0)
    current = replace(previous, clock=T0 + 600, cpu_usec=30_000_000)  # 30 s of CPU in 10 min: 5%
    assert "CPU 5.0% < 10%" in idle(previous, current).summary
    assert idle(previous, current, IdleThresholds(cpu_percent=4)).reasons == ["CPU 5.0% >= 4%"]


@pytest.mark.parametrize(
    "current",
    [
        pytest.param({"clock": T0 - 5}, id="clock-went-back"),
        pytest.param({"clock": T0}, id="same-clock"),
        pytest.param({"cpu_usec": 10}, id="counter-reset"),
    ],
)
def test_samples_that_do_not_follow_each_other_are_active(current: dict[str, Any]) -> None:
    previous = sample()
    verdict = idle(previous, replace(previous, **{"clock": T0 + 60, **current}))
    assert verdict.active
    assert any("not measured" in reason for reason in verdict.reasons)


def test_absent_gpus_are_fine() -> None:
    for gpus in (None, []):
        verdict = idle(*pair(gpu_utilization=gpus))
        assert not verdict.active, gpus
        assert verdict.summary.endswith("no GPU")


def test_a_busy_gpu_keeps_the_workspace_active_on_a_quiet_cpu() -> None:
    verdict = idle(*pair(cpu_percent=1.0, gpu_utilization=[0, 97]))
    assert verdict.active
    assert verdict.reasons == ["GPU 1 at 97%"]


def test_gpu_threshold() -> None:
    assert idle(*pair(gpu_utilization=[5])).reasons == ["GPU 0 at 5%"]
    assert not idle(*pair(gpu_utilization=[4, 4])).active
    assert idle(*pair(gpu_utilization=[20]), IdleThresholds(gpu_percent=50)).active is False


def test_a_failing_nvidia_smi_is_active() -> None:
    verdict = idle(*pair(gpu_utilization=[], gpu_error="nvidia-smi exited 18: driver mismatch"))
    assert verdict.active
    assert verdict.reasons == ["GPU not measured: nvidia-smi exited 18: driver mismatch"]


def test_every_reason_is_listed() -> None:
    previous, current = pair(
        cpu_percent=90,
        ssh_sessions=1,
        busy_kernels=1,
        gpu_utilization=[99, 98],
        jupyter_last_activity=datetime.fromtimestamp(T0 + 59, UTC),
    )
    assert idle(previous, current).reasons == [
        "1 SSH session",
        "kernel busy",
        "Jupyter used 1 s ago",
        "CPU 90% >= 10%",
        "GPU 0 at 99%",
        "GPU 1 at 98%",
    ]


def test_parsed_probe_output_end_to_end() -> None:
    first = parse_probe(probe_json(jupyter=jupyter_state("idle"), cpu_usec=5_000_000))
    second = parse_probe(probe_json(clock=T0 + 60, jupyter=jupyter_state("busy"), cpu_usec=5_100_000, gpus=[]))
    verdict = idle(first, second)
    assert verdict.active and verdict.reasons == ["kernel busy"]
    quiet = parse_probe(probe_json(clock=T0 + 120, jupyter=jupyter_state("idle"), cpu_usec=5_200_000, gpus=[]))
    assert idle(second, quiet).summary == "no SSH session, no busy kernel, CPU 0.2% < 10%, no GPU"


@pytest.mark.parametrize("bad", [{"cpu_percent": -1}, {"gpu_percent": float("nan")}, {"cpu_percent": "10"}])
def test_thresholds_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        IdleThresholds(**bad)


# ---- the in-image probe's fact gathering (the script, loaded as a module) ----


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    path = images_dir() / "workspace" / "idle-probe"
    loader = importlib.machinery.SourceFileLoader("devenv_idle_probe", str(path))
    spec = importlib.util.spec_from_loader("devenv_idle_probe", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_probe_is_an_executable_python3_script_using_only_the_stdlib(probe: ModuleType) -> None:
    path = images_dir() / "workspace" / "idle-probe"
    assert path.read_text().startswith("#!/usr/bin/python3\n")
    imported = {name.split(".")[0] for name in vars(probe) if isinstance(vars(probe)[name], ModuleType)}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def _process(proc: Path, pid: int, *argv: str) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in argv))


def test_probe_counts_ssh_session_processes_only(probe: ModuleType, tmp_path: Path) -> None:
    _process(tmp_path, 1, "/usr/bin/tini", "--", "/opt/devenv/bin/entrypoint")
    _process(tmp_path, 20, "sshd: /usr/sbin/sshd -D -e [listener] 0 of 10-100 startups")
    _process(tmp_path, 30, "sshd: dev [priv]")
    _process(tmp_path, 31, "sshd: dev@pts/0")
    _process(tmp_path, 40, "sshd: dev [preauth]")
    _process(tmp_path, 50, "sshd: dev@notty")
    _process(tmp_path, 60, "python", "-c", "print('sshd: dev@pts/9')")
    (tmp_path / "self").mkdir()
    (tmp_path / "70").mkdir()  # a process that ended: no cmdline
    assert probe.ssh_sessions(str(tmp_path)) == 2


def test_probe_reads_cgroup_v2_cpu(probe: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n")
    assert probe.cpu_usec(str(tmp_path)) == 123456


@pytest.mark.parametrize("controller", ["cpuacct", "cpu,cpuacct"])
def test_probe_reads_cgroup_v1_cpu_in_nanoseconds(probe: ModuleType, tmp_path: Path, controller: str) -> None:
    (tmp_path / controller).mkdir()
    (tmp_path / controller / "cpuacct.usage").write_text("987654321\n")
    assert probe.cpu_usec(str(tmp_path)) == 987654


def test_probe_without_a_cgroup_figure(probe: ModuleType, tmp_path: Path) -> None:
    assert probe.cpu_usec(str(tmp_path)) is None


def test_probe_without_jupyter_token_reports_no_jupyter(probe: ModuleType, tmp_path: Path) -> None:
    assert probe.jupyter(str(tmp_path / "missing")) == (None, None)


def _fake_nvidia_smi(directory: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = directory / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_probe_without_nvidia_smi_has_no_gpus(
    probe: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert probe.gpus() == (None, None)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param("echo 97; echo 0\n", ([97, 0], None), id="two-gpus"),
        pytest.param("echo 'No devices were found'; exit 6\n", ([], None), id="no-devices"),
        pytest.param(
            "echo 'Failed to initialize NVML: Driver/library version mismatch' >&2; exit 18\n",
            ([], "nvidia-smi exited 18: Failed to initialize NVML: Driver/library version mismatch"),
            id="failing",
        ),
        pytest.param("echo 12; echo '[N/A]'\n", ([12], "nvidia-smi: unreadable utilization [N/A]"), id="n-a"),
    ],
)
def test_probe_reads_nvidia_smi(
    probe: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    script: str,
    expected: tuple[list[int], str | None],
) -> None:
    _fake_nvidia_smi(tmp_path, script, monkeypatch)
    assert probe.gpus() == expected


def test_probe_output_parses(
    probe: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_nvidia_smi(tmp_path, "echo 42\n", monkeypatch)
    monkeypatch.setattr(probe, "TOKEN_FILE", str(tmp_path / "no-token"))
    assert probe.main() == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    parsed = parse_probe(out)
    assert parsed.gpu_utilization == [42]
    assert not parsed.jupyter_running


def test_the_probes_own_cpu_is_not_work() -> None:
    # 1 s apart, 150 ms of CPU in between, 140 ms of it the probe's own Python: idle (1%), not 15%
    previous = sample(clock=T0, cpu_usec=1_000_000)
    current = sample(clock=T0 + 1.0, cpu_usec=1_150_000, probe_usec=140_000)
    verdict = assess(previous, current, IdleThresholds())
    assert not verdict.active and "CPU 1.0%" in verdict.summary
    busy = sample(clock=T0 + 1.0, cpu_usec=1_400_000, probe_usec=140_000)  # 260 ms besides the probe: work
    assert assess(previous, busy, IdleThresholds()).active


def test_parse_reads_the_probes_own_cpu() -> None:
    text = '{"clock": 1.0, "ssh_sessions": 0, "jupyter": null, "gpus": null, "cpu_usec": 5, "probe_usec": 3}'
    assert parse_probe(text).probe_usec == 3
    with pytest.raises(BackendError, match="probe_usec"):
        parse_probe(text.replace('"probe_usec": 3', '"probe_usec": -1'))
