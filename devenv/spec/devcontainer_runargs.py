"""What a Dev Container asks of its running container: runArgs, hostRequirements, mounts and ports.

The `docker run` flags in runArgs carry what a PyTorch job needs (GPUs, a large /dev/shm, ulimits);
dropping them gives a workspace with no GPU and 64 MB of shared memory. Each flag devenv has a setting
for becomes that setting; every other one is named as refused (it would weaken the isolation between a
workspace and its host) or not needed (devenv sets it itself), with the reason; reading the flags and
those reasons are docker_run_flags.py's. `Draft`, the spec being assembled, lives here because this is
the lowest of the three devcontainer modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devenv.spec.docker_run_flags import MANAGED, REFUSED, parse_flags, split_runargs
from devenv.spec.fields import ULIMIT_NAMES
from devenv.spec.units import parse_size

_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PYTHON_APT_RE = re.compile(r"python[23]?(?:\.[0-9]+)?|python-.+|python3(?:\.[0-9]+)?-(?:pip|venv|distutils)")
_DOCKER_SIZE_RE = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,9})?)\s*([bkmgt]?)(?:i?b)?", re.IGNORECASE)
RESERVED_PORTS = {22: "sshd (devenv runs it: `devenv ssh`)", 8888: "JupyterLab (devenv runs it: jupyter: true)"}
_BITS = {"Ti": 40, "Gi": 30, "Mi": 20, "Ki": 10}
IPC_HOST_SHM = "16Gi"  # --ipc=host gave /dev/shm the host's size; without a memory limit to halve, ask this


@dataclass
class Draft:
    """The spec being assembled from a devcontainer.json, with the warnings said along the way."""

    warnings: list[str] = field(default_factory=list)
    base: str | None = None
    python: list[tuple[str, str]] = field(default_factory=list)  # (MAJOR.MINOR, the key that asked for it)
    apt: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    create: list[str | dict[str, str]] = field(default_factory=list)
    start: list[str | dict[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    ipc_host: bool = False
    _rank: dict[str, int] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def add_apt(self, package: str, origin: str) -> None:
        if _PYTHON_APT_RE.fullmatch(package):
            self.warn(
                f"{origin}: apt package {package} not imported: the base provides Python; Python packages "
                "go in requirements.in"
            )
        elif package not in self.apt:
            self.apt.append(package)

    def add_port(self, port: int, origin: str) -> None:
        if port in RESERVED_PORTS:
            self.warn(f"{origin}: port {port} not imported: it is {RESERVED_PORTS[port]}")
        elif port not in self.ports:
            self.ports.append(port)

    def set_resource(self, key: str, value: object, origin: str, rank: int) -> None:
        """runArgs (rank 2: the container's own limit) wins over hostRequirements (1: the host's minimum)."""
        if key in self.resources and self.resources[key] != value:
            if self._rank[key] > rank:  # docker: the last of two equal flags wins
                self.warn(
                    f"{origin}: resources.{key} {value!r} not imported: {self.resources[key]!r} "
                    "from the container's own settings is kept"
                )
                return
            self.warn(f"{origin}: resources.{key} {value!r} replaces {self.resources[key]!r}")
        self.resources[key] = value
        self._rank[key] = rank


def docker_size(text: str) -> str | None:
    """A docker size ("16gb", "16g", "512m": binary units, as docker reads them) in the spec's form ("16Gi")."""
    match = _DOCKER_SIZE_RE.fullmatch(text.strip())
    if match is None:
        return None
    size = int(float(match.group(1)) * 1024 ** "bkmgt".index((match.group(2) or "b").lower()))
    try:
        parse_size(size)  # more than 0, at most an exbibyte
    except ValueError:
        return None
    unit = next((unit for unit in ("Ti", "Gi", "Mi", "Ki") if size % 2 ** _BITS[unit] == 0), "")
    return f"{size // 2 ** _BITS[unit]}{unit}" if unit else str(size)


def run_args(value: object, draft: Draft) -> None:
    """Map `docker run` flags onto resources, env and ports; name every other flag with the reason."""
    if not isinstance(value, list):
        draft.warn("runArgs not imported: expected a list of docker run arguments")
        return
    for name, flag_value, written in parse_flags(split_runargs(value), draft.warn):
        text = (flag_value or "").strip().strip("\"'")
        shown = f"runArgs {written}" + (f" {flag_value}" if flag_value and flag_value not in written else "")
        if name in _RUN_FLAGS:
            _RUN_FLAGS[name](text, shown, draft)
        elif name in REFUSED:
            draft.warn(f"{shown} refused: {REFUSED[name]}")
        elif name in MANAGED:
            draft.warn(f"{shown} not imported: {MANAGED[name]}")
        else:
            draft.warn(f"{shown} not imported: devenv has no such setting")


def _gpus(text: str, shown: str, draft: Draft) -> None:
    lowered = text.lower()
    count_match = re.search(r"count=(\w+)", lowered)
    if count_match:
        lowered = count_match.group(1)
    if lowered.isdigit() and int(lowered) > 0:
        draft.set_resource("gpu", int(lowered), shown, 2)
    elif lowered == "all":
        draft.set_resource("gpu", 1, shown, 2)
        draft.warn(
            f"{shown} imported as resources.gpu: 1: devenv reserves GPUs by count, so that two workspaces "
            "never share one; set how many this workspace needs"
        )
    elif "device=" in lowered:
        ids = [part for part in lowered.split("device=", 1)[1].split(",") if part and "=" not in part]
        draft.set_resource("gpu", max(1, len(ids)), shown, 2)
        draft.warn(
            f"{shown} imported as resources.gpu: {max(1, len(ids))}: device ids are one host's; devenv "
            "picks free GPUs itself"
        )
    else:
        draft.warn(f"{shown} not imported: expected all, a count, count=N or device=IDS")


def _size_flag(key: str) -> Any:
    def apply(text: str, shown: str, draft: Draft) -> None:
        size = docker_size(text)
        if size is None:
            draft.warn(f"{shown} not imported: {text!r} is not a size like 16g")
        else:
            draft.set_resource(key, size, shown, 2)

    return apply


def _cpus(text: str, shown: str, draft: Draft) -> None:
    try:
        cpus = float(text)
    except ValueError:
        cpus = 0.0
    if not 0 < cpus <= 4096:
        draft.warn(f"{shown} not imported: expected a number of CPUs more than 0")
        return
    draft.set_resource("cpu", int(cpus) if cpus.is_integer() else cpus, shown, 2)


def _ulimit(text: str, shown: str, draft: Draft) -> None:
    name, _, limits = text.partition("=")
    hard = limits.rpartition(":")[2].strip()
    if name not in ULIMIT_NAMES:
        draft.warn(f"{shown} not imported: devenv sets only the {', '.join(ULIMIT_NAMES)} limits")
    elif not re.fullmatch(r"-1|[0-9]{1,19}", hard) and hard != "unlimited":
        draft.warn(f"{shown} not imported: expected NAME=SOFT[:HARD] with numbers or -1")
    else:
        limit = -1 if hard == "unlimited" else int(hard)
        draft.resources.setdefault("ulimits", {})[name] = limit
        if ":" in limits and limits.partition(":")[0].strip() != hard:
            draft.warn(f"{shown}: imported as {name}: {limit}, the hard limit (devenv sets soft = hard)")


def _ipc(text: str, shown: str, draft: Draft) -> None:
    if text == "host":
        draft.ipc_host = True  # the shm it stands for is decided last, when the memory limit is known
    elif text in ("private", "shareable", ""):
        draft.warn(f"{shown} not imported: each workspace has its own IPC namespace already")
    else:
        draft.warn(f"{shown} refused: sharing another container's IPC namespace breaks isolation")


def ipc_host_shm(draft: Draft) -> None:
    """--ipc=host is refused, but what it was for (a large /dev/shm for DataLoader workers) is kept."""
    if not draft.ipc_host:
        return
    memory = draft.resources.get("memory")
    shm = IPC_HOST_SHM
    try:
        if memory is not None:
            shm = docker_size(str(max(parse_size(memory) // 2, 2**30))) or IPC_HOST_SHM
    except ValueError:
        pass
    reason = (
        "runArgs --ipc=host refused: it shares the host's IPC namespace (its shared memory and semaphores) "
        "with the workspace"
    )
    if "shm" in draft.resources:
        draft.warn(f"{reason}; /dev/shm keeps the size given by --shm-size")
        return
    draft.set_resource("shm", shm, "runArgs --ipc=host", 0)
    draft.warn(
        f"{reason}; PyTorch used it for a large /dev/shm, so resources.shm is {shm} "
        "(raise it if DataLoader workers run out)"
    )


def _env(text: str, shown: str, draft: Draft) -> None:
    key, eq, value = text.partition("=")
    if not eq:
        draft.warn(
            f"{shown} not imported: it copies {key!r} from the developer's host environment; "
            "set it under env:, or as a secret"
        )
    elif not _ENV_KEY_RE.fullmatch(key):
        draft.warn(f"{shown} not imported: {key!r} is not an environment variable name")
    elif "${" in value:
        draft.warn(f"{shown} not imported: {value!r} refers to a variable devenv does not expand")
    else:
        draft.env[key] = value


def _publish(text: str, shown: str, draft: Draft) -> None:
    parts = text.split("/")[0].split(":")
    container = parts[-1]
    if not container.isdigit() or not 1 <= int(container) <= 65535:
        draft.warn(f"{shown} not imported: expected [HOST:]PORT (ranges are not imported)")
        return
    draft.add_port(int(container), shown)
    if len(parts) > 1 and parts[-2] and parts[-2] != container:
        draft.warn(f"{shown}: port {container} is published on the same port number of the host's loopback")


_RUN_FLAGS = {
    "gpus": _gpus,
    "shm-size": _size_flag("shm"),
    "memory": _size_flag("memory"),
    "cpus": _cpus,
    "ulimit": _ulimit,
    "ipc": _ipc,
    "env": _env,
    "publish": _publish,
    "expose": _publish,
}


def host_requirements(value: object, draft: Draft) -> None:
    """hostRequirements: the least a host must have; rank 1, so runArgs' own limits win over it."""
    if not isinstance(value, dict):
        draft.warn("hostRequirements not imported: expected an object")
        return
    for key, item in value.items():
        origin = f"hostRequirements.{key}"
        if key == "gpu":
            _host_gpu(item, draft)
        elif key == "cpus" and isinstance(item, int | float) and not isinstance(item, bool) and 0 < item <= 4096:
            draft.set_resource("cpu", item, origin, 1)
        elif key in ("memory", "storage") and _valid_size(item):
            draft.set_resource("memory" if key == "memory" else "disk", item, origin, 1)
        elif key in ("cpus", "memory", "storage"):
            draft.warn(
                f"{origin} ({item!r}) not imported: expected "
                + ("a number of CPUs more than 0" if key == "cpus" else 'a size like "32gb"')
            )
        else:
            draft.warn(f"{origin} ({item!r}) not imported: devenv has no such requirement")


def _host_gpu(value: object, draft: Draft) -> None:
    if value is True:
        draft.set_resource("gpu", 1, "hostRequirements.gpu", 1)
    elif value == "optional":
        draft.warn(
            'hostRequirements.gpu "optional" not imported: devenv asks for GPUs or not, and an optional '
            "GPU is not asked; add resources.gpu: 1 to get one"
        )
    elif isinstance(value, dict):
        draft.set_resource("gpu", 1, "hostRequirements.gpu", 1)
        detail = ", ".join(f"{k}={v}" for k, v in value.items())
        draft.warn(
            f"hostRequirements.gpu ({detail}) imported as one GPU of any type: devenv asks GPUs by type "
            'and count; name a type with enough memory, like gpu: "A100:1"'
        )
    elif value is not False:
        draft.warn(f'hostRequirements.gpu ({value!r}) not imported: expected true, false or "optional"')


def _valid_size(value: object) -> bool:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return False
    try:
        parse_size(value)
    except ValueError:
        return False
    return True


def forward_ports(key: str, value: object, draft: Draft) -> None:
    """forwardPorts and appPort: a number, "8888", "host:8888" (or appPort's single value)."""
    items = value if isinstance(value, list) else [value]
    if key == "forwardPorts" and not isinstance(value, list):
        draft.warn("forwardPorts not imported: expected a list")
        return
    for item in items:
        port = _port(item)
        if port is None:
            draft.warn(f"{key}: port {item!r} not imported: expected a port number or 'host:port'")
        else:
            draft.add_port(port, key)


def ports_attributes(value: object, draft: Draft) -> None:
    """Labels have no place in the spec's list of port numbers; they are said here instead."""
    if not isinstance(value, dict):
        draft.warn("portsAttributes not imported: expected an object")
        return
    labels, others = [], []
    for key, attributes in value.items():
        port = _port(key)
        label = attributes.get("label") if isinstance(attributes, dict) else None
        if port is not None and port in draft.ports:
            if isinstance(label, str) and label:
                labels.append(f"{port} ({label})")
            others += [f"{port}.{name}" for name in (attributes or {}) if name != "label"]
        else:
            draft.warn(
                f"portsAttributes.{key} not imported: devenv publishes only the ports listed in "
                "forwardPorts/appPort, and this one is not"
            )
    if labels:
        draft.warn(f"portsAttributes: ports {', '.join(labels)} are under ports:; the spec keeps no port labels")
    if others:
        draft.warn(
            f"portsAttributes ({', '.join(others)}) not imported: devenv publishes listed ports on the "
            "host's loopback and has no auto-forward settings"
        )


def _port(value: object) -> int | None:
    """A forwardPorts entry: 8888, "8888" or "host:8888"."""
    if isinstance(value, bool):
        return None
    text = value.rpartition(":")[2] if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit():
        text = int(text)
    return text if isinstance(text, int) and 1 <= text <= 65535 else None
