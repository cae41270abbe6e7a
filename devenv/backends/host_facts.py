"""Reading a host's GPUs and disk from the words of nvidia-smi and df (on the host, not in a workspace)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from devenv.backends.base import Gpu, HostFacts, Observed
from devenv.backends.ssh.session import CommandResult
from devenv.engine.connect import is_local_engine

Runner = Callable[[str], CommandResult]

NVIDIA_SMI_QUERY = (
    "nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu --format=csv,noheader,nounits"
)


def _number(text: str) -> int:
    try:
        return int(float(text.strip()))
    except ValueError:
        return 0  # "[N/A]" on some boards: unknown counts as idle, the other columns still tell


def parse_gpus(output: str) -> list[Gpu]:
    """nvidia-smi's CSV (the query above), one GPU per line."""
    gpus = []
    for line in output.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        gpus.append(
            Gpu(
                index=fields[0],
                name=fields[1],
                memory_total_mib=_number(fields[2]),
                memory_used_mib=_number(fields[3]),
                utilization_percent=_number(fields[4]),
            )
        )
    return gpus


def parse_df(output: str) -> tuple[int, int] | None:
    """(free, total) bytes from `df -PB1 PATH`; None when df said something else."""
    lines = [line.split() for line in output.strip().splitlines()]
    if len(lines) < 2 or len(lines[-1]) < 4:
        return None
    try:
        return int(lines[-1][3]), int(lines[-1][1])
    except ValueError:
        return None


def local_runner(url: str) -> Runner | None:
    """Commands on the engine's machine when that is this one (a unix socket, localhost); None for a tcp://
    engine elsewhere, whose machine devenv cannot log in to."""
    if not is_local_engine(url):
        return None

    def run(command: str) -> CommandResult:
        try:
            done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return CommandResult(127, "", str(exc))
        return CommandResult(done.returncode, done.stdout, done.stderr)

    return run


def probe_host(info: Mapping[str, Any], containers: list[Observed], run: Runner | None) -> HostFacts:
    """The facts of a host from the engine's `info`, its workspace containers, and nvidia-smi and df run there.

    A GPU is held by a running container, and by one created but not yet started (its start is under way)."""
    running = [seen for seen in containers if seen.running]
    holders = {
        gpu: seen.workspace for seen in containers if seen.running or seen.status == "created" for gpu in seen.gpu_ids
    }
    gpus: list[Gpu] = []
    note = ""
    smi = run(NVIDIA_SMI_QUERY + " 2>&1") if run is not None else None
    if smi is None:
        note = "unknown: devenv cannot log in to this engine's machine"
    elif smi.exit_code == 127 or "not found" in smi.stdout:
        note = "no NVIDIA GPU (nvidia-smi not found)"
    elif smi.exit_code != 0:
        note = f"nvidia-smi failed: {smi.stdout.strip()[-200:]}"
    else:
        gpus = [replace(gpu, workspace=holders.get(gpu.index)) for gpu in parse_gpus(smi.stdout)]
    disk = None
    root = str(info.get("DockerRootDir") or "/var/lib/docker")
    df = run(f"df -PB1 '{root}' 2>/dev/null || df -PB1 /") if run is not None else None
    if df is not None and df.exit_code == 0:
        disk = parse_df(df.stdout)
    return HostFacts(
        engine_version=str(info.get("ServerVersion") or "?"),
        os=str(info.get("OperatingSystem") or "?"),
        arch=str(info.get("Architecture") or "?"),
        cpus=int(info.get("NCPU") or 0),
        memory_bytes=int(info.get("MemTotal") or 0),
        disk_free_bytes=disk[0] if disk else None,
        disk_total_bytes=disk[1] if disk else None,
        gpus=tuple(gpus),
        gpu_note=note,
        workspaces=len(running),
    )
