"""Is a workspace in use? ML-aware rules over two samples of the in-container idle probe.

The probe (images/workspace/idle-probe) only gathers facts; the rules live here so that they can
change without rebuilding images. They err towards "active": a notebook cell that has run for ten
hours, a training job on a GPU, or anything the probe could not see never counts as idle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

from devenv.errors import BackendError

# Kernel states that mean work is going on ("starting" too: a kernel being brought up for someone).
BUSY_KERNEL_STATES = frozenset({"busy", "starting"})


@dataclass(frozen=True)
class IdleSample:
    """One probe reading. `clock` is the workspace's time.time(); `gpu_utilization` None: no GPUs."""

    clock: float
    ssh_sessions: int
    jupyter_running: bool
    busy_kernels: int
    jupyter_last_activity: datetime | None
    cpu_usec: int | None
    gpu_utilization: list[int] | None
    jupyter_error: str | None = None
    gpu_error: str | None = None
    probe_usec: int = 0  # the probe's own CPU up to its reading (Python's start, its checks): not work


@dataclass(frozen=True)
class IdleThresholds:
    cpu_percent: float = 10.0  # of one core, averaged between two samples
    gpu_percent: float = 5.0

    def __post_init__(self) -> None:
        for name in ("cpu_percent", "gpu_percent"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class Assessment:
    """The verdict: `reasons` says why a workspace is active; `summary` is one line for an event."""

    active: bool
    reasons: list[str] = field(default_factory=list)
    summary: str = ""


def _bad(message: str, text: str) -> BackendError:
    shown = text.strip()
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return BackendError(
        f"the idle probe's output is not understood: {message} (got {shown!r})",
        hint="the workspace's image may predate the idle probe; rebuild it",
    )


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp(value: Any, what: str, text: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{what} is not a timestamp", text)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad(f"{what} is not an ISO timestamp", text) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # Jupyter writes UTC


def parse_probe(text: str) -> IdleSample:
    """The probe's JSON line as a sample; anything malformed is a BackendError that says what."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise _bad("no output", text)
    try:
        data = json.loads(lines[-1])  # the probe prints one line; anything before it is noise
    except ValueError as exc:
        raise _bad("not JSON", text) from exc
    if not isinstance(data, dict):
        raise _bad("not a JSON object", text)

    clock = data.get("clock")
    if not _number(clock) or not math.isfinite(clock):
        raise _bad("no clock", text)
    ssh = data.get("ssh_sessions")
    if not isinstance(ssh, int) or isinstance(ssh, bool) or ssh < 0:
        raise _bad("ssh_sessions is not a count", text)
    cpu = data.get("cpu_usec")
    if cpu is not None and (not isinstance(cpu, int) or isinstance(cpu, bool) or cpu < 0):
        raise _bad("cpu_usec is not a count", text)
    probe_cpu = data.get("probe_usec", 0)
    if not isinstance(probe_cpu, int) or isinstance(probe_cpu, bool) or probe_cpu < 0:
        raise _bad("probe_usec is not a count", text)
    gpus = data.get("gpus")
    if gpus is not None and (not isinstance(gpus, list) or not all(_number(g) for g in gpus)):
        raise _bad("gpus is not a list of numbers", text)

    jupyter = data.get("jupyter")
    busy = 0
    last_activity = None
    if jupyter is not None:
        if not isinstance(jupyter, dict) or not isinstance(jupyter.get("kernels"), list):
            raise _bad("jupyter has no kernel list", text)
        for kernel in jupyter["kernels"]:
            if not isinstance(kernel, dict):
                raise _bad("a kernel is not an object", text)
            if kernel.get("execution_state") in BUSY_KERNEL_STATES:
                busy += 1
        last_activity = _timestamp(jupyter.get("last_activity"), "jupyter.last_activity", text)

    return IdleSample(
        clock=float(clock),
        ssh_sessions=ssh,
        jupyter_running=jupyter is not None,
        busy_kernels=busy,
        jupyter_last_activity=last_activity,
        cpu_usec=cpu,
        gpu_utilization=None if gpus is None else [round(g) for g in gpus],
        jupyter_error=_optional_text(data.get("jupyter_error")),
        gpu_error=_optional_text(data.get("gpu_error")),
        probe_usec=probe_cpu,
    )


def _optional_text(value: Any) -> str | None:
    return str(value) if value else None


def _percent(value: float) -> str:
    """85% and 0.4%: whole numbers where the decimal says nothing."""
    return f"{value:.0f}%" if value >= 10 else f"{value:.1f}%"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _cpu_percent(previous: IdleSample | None, current: IdleSample) -> tuple[float | None, str]:
    """CPU use between the two samples in % of one core, or None with why it is not known."""
    if previous is None:
        return None, "first sample: CPU not measured yet"
    if previous.cpu_usec is None or current.cpu_usec is None:
        return None, "CPU not measured yet (the probe found no cgroup CPU figure)"
    elapsed = current.clock - previous.clock
    used = current.cpu_usec - previous.cpu_usec
    if elapsed <= 0 or used < 0:  # clock stepped back, or the container restarted (counter reset)
        return None, "CPU not measured yet (the samples do not follow each other)"
    # Each probe costs a Python start (~0.1 s of CPU): at a short interval that alone would read as
    # work, so the probe's own share, which it reports, is taken out.
    used = max(0, used - current.probe_usec)
    return used / (elapsed * 1e6) * 100, ""


def assess(previous: IdleSample | None, current: IdleSample, thresholds: IdleThresholds) -> Assessment:
    """Active if anything shows use since `previous` (the last sample of the same workspace)."""
    reasons: list[str] = []
    facts: list[str] = []

    if current.ssh_sessions:
        reasons.append(_plural(current.ssh_sessions, "SSH session"))
    facts.append("no SSH session")

    if current.busy_kernels:  # however long it has been running: a long cell is still work
        reasons.append("kernel busy" if current.busy_kernels == 1 else f"{current.busy_kernels} kernels busy")
    if current.jupyter_error:
        reasons.append(f"Jupyter not readable: {current.jupyter_error}")
    last = current.jupyter_last_activity
    if last is not None and previous is not None and last.timestamp() > previous.clock:
        reasons.append(f"Jupyter used {max(0, round(current.clock - last.timestamp()))} s ago")
    facts.append("no busy kernel" if current.jupyter_running else "no Jupyter")

    cpu, unknown = _cpu_percent(previous, current)
    limit = f"{thresholds.cpu_percent:g}%"
    if cpu is None:
        reasons.append(unknown)
    elif cpu >= thresholds.cpu_percent:
        reasons.append(f"CPU {_percent(cpu)} >= {limit}")
    else:
        facts.append(f"CPU {_percent(cpu)} < {limit}")

    gpus = current.gpu_utilization
    if current.gpu_error:
        reasons.append(f"GPU not measured: {current.gpu_error}")
    gpu_limit = f"{thresholds.gpu_percent:g}%"
    for index, utilization in enumerate(gpus or []):
        if utilization >= thresholds.gpu_percent:
            reasons.append(f"GPU {index} at {utilization}%")
    facts.append(f"GPU max {max(gpus)}% < {gpu_limit}" if gpus else "no GPU")

    if reasons:
        return Assessment(active=True, reasons=reasons, summary="active: " + ", ".join(reasons))
    return Assessment(active=False, reasons=[], summary=", ".join(facts))
