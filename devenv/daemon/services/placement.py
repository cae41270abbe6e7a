"""Where a workspace goes with `--on auto`, and which of a host's GPUs it gets.

Best fit: of the hosts with enough free GPUs of the asked type, the one with the fewest free, so a
big host stays free for a big job; without a GPU request, the host running the fewest workspaces.
A GPU is free when no devenv workspace holds it and nvidia-smi shows it idle (see Gpu.busy).
"""

from __future__ import annotations

from collections.abc import Mapping

from devenv.backends.base import Gpu, HostFacts
from devenv.errors import NoCapacity
from devenv.spec.units import GpuRequest


def matching(gpu: Gpu, kind: str | None) -> bool:
    """ "A100" matches "NVIDIA A100-SXM4-80GB"; no type matches every GPU."""
    return kind is None or kind.lower() in ("any", "") or kind.lower() in gpu.name.lower()


def free_matching(facts: HostFacts, request: GpuRequest) -> list[Gpu]:
    return [gpu for gpu in facts.free_gpus if matching(gpu, request.type)]


def choose_host(request: GpuRequest | None, probed: Mapping[str, tuple[HostFacts | None, str | None]]) -> str:
    """The backend name to run on; NoCapacity naming what each host has when none fits."""
    reachable = {name: facts for name, (facts, _error) in probed.items() if facts is not None}
    if request is None:
        if not reachable:
            raise NoCapacity("no host answers: " + _summary(probed, None), hint="`devenv host ls` shows each host")
        return min(reachable, key=lambda name: (reachable[name].workspaces, name))
    fits = {name: len(free_matching(facts, request)) for name, facts in reachable.items()}
    fitting = [name for name, free in fits.items() if free >= request.count]
    if not fitting:
        raise NoCapacity(
            f"no host has {request.count} free {request.type or ''} GPU(s): {_summary(probed, request)}",
            hint="free one (`devenv stop` a GPU workspace), add a host (`devenv host add`), or ask "
            "for fewer in `resources: gpu:`",
        )
    return min(fitting, key=lambda name: (fits[name], reachable[name].workspaces, name))


def choose_gpus(facts: HostFacts, request: GpuRequest, host: str) -> tuple[str, ...]:
    """The GPU indexes a new container gets on `host`; NoCapacity when too few are free now."""
    free = free_matching(facts, request)
    if len(free) < request.count:
        raise NoCapacity(
            f"host {host} has {len(free)} free {request.type or ''} GPU(s) of {len(facts.gpus)}; the "
            f"workspace asks for {request.count}",
            hint="stop a workspace that holds one, or `devenv up --on auto` to go where they are free",
        )
    return tuple(gpu.index for gpu in free[: request.count])


def _summary(probed: Mapping[str, tuple[HostFacts | None, str | None]], request: GpuRequest | None) -> str:
    parts = []
    for name, (facts, error) in sorted(probed.items()):
        if facts is None:
            parts.append(f"{name}: unreachable ({error})")
        elif request is None:
            parts.append(f"{name}: {facts.workspaces} running")
        else:
            parts.append(
                f"{name}: {len(free_matching(facts, request))} free of {len(facts.gpus)}"
                + (f" ({facts.gpu_note})" if facts.gpu_note else "")
            )
    return "; ".join(parts) or "no hosts"
