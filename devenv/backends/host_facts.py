"""Reading a host's GPUs and disk from the words of nvidia-smi and df (on the host, not in a workspace)."""

from __future__ import annotations

from devenv.backends.base import Gpu

NVIDIA_SMI_QUERY = ("nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu "
                    "--format=csv,noheader,nounits")


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
        gpus.append(Gpu(index=fields[0], name=fields[1], memory_total_mib=_number(fields[2]),
                        memory_used_mib=_number(fields[3]), utilization_percent=_number(fields[4])))
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
