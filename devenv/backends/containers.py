"""What a workspace's container is made with, from a LaunchRequest: labels, environment, ports, mounts,
GPUs, the secrets tmpfs, its own network and the isolation settings. Plain data for the SDK's
`create_container`; the docker backend makes the calls."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devenv.backends.base import (
    ENGINE_HOST_NAME,
    HOME_MOUNT,
    LABEL_BACKEND,
    LABEL_DAEMON,
    LABEL_GPU_IDS,
    LABEL_IMAGE_HASH,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_WORKSPACE,
    SECRETS_DIR,
    SSH_PORT,
    Handle,
    LaunchRequest,
)
from devenv.backends.isolation import NETWORK_ROLE, network_name, security_settings
from devenv.engine.sdk import DeviceRequest, Mount, Ulimit
from devenv.errors import BackendError

LABEL_GPU = "devenv.gpu"  # "A100:2" (kind:count); Docker cannot pick GPUs by model, so it is a record
WORKSPACE_UID = 1000  # `dev` in every devenv base (images/*/Dockerfile, the bootstrap recipe)
# Secrets: a small tmpfs only dev (and root) can enter; noexec, so nothing placed there can be run.
_RLIMIT_NAMES = {"3": "stack", "4": "core", "6": "nproc", "7": "nofile", "8": "memlock"}  # Linux RLIMIT_* numbers
_RLIMIT_REFUSED = re.compile(r"error setting rlimit type (\d+): operation not permitted")
SECRETS_TMPFS = f"rw,noexec,nosuid,nodev,size=1m,mode=0700,uid={WORKSPACE_UID},gid={WORKSPACE_UID}"


@dataclass(frozen=True)
class ContainerSpec:
    """The arguments of one workspace's `create_container`, and of its network's creation."""

    name: str
    network: str
    network_labels: dict[str, str]
    labels: dict[str, str]
    environment: dict[str, str]
    ports: list[int]
    host_config: dict[str, Any]  # keyword arguments of `create_host_config`


def container_spec(request: LaunchRequest, *, backend: str, remote: bool) -> ContainerSpec:
    """`remote`: the engine is reached over SSH, so sshd is only exposed (reached by tunnel), not published
    on the engine's 127.0.0.1, which is not this machine's."""
    handle = Handle.for_workspace(request.workspace)
    network = network_name(request.workspace)
    labels = {
        LABEL_WORKSPACE: request.workspace,
        LABEL_OWNER: request.owner,
        LABEL_IMAGE_HASH: request.image_hash,
        LABEL_ROLE: "workspace",
        LABEL_BACKEND: backend,
    }
    if request.daemon:
        labels[LABEL_DAEMON] = request.daemon
    device_requests = None
    if request.gpu_count is not None:
        labels[LABEL_GPU] = f"{request.gpu_kind or 'any'}:{request.gpu_count}"
        if request.gpu_ids:  # the ones placement chose: two workspaces never get the same GPU
            labels[LABEL_GPU_IDS] = ",".join(request.gpu_ids)
            device_requests = [DeviceRequest(device_ids=list(request.gpu_ids), capabilities=[["gpu"]])]
        else:
            device_requests = [DeviceRequest(count=request.gpu_count, capabilities=[["gpu"]])]
    bindings: dict[int, tuple[str, int | None] | None] = {port: ("127.0.0.1", port) for port in request.ports}
    if request.ssh:
        # local: an ephemeral engine port, read back after start; remote: exposed only, reached by tunnel
        bindings[SSH_PORT] = None if remote else ("127.0.0.1", None)
    environment = {
        **request.env,
        "DEVENV_WORKSPACE": request.workspace,
        "DEVENV_SSH": "1" if request.ssh else "0",
        "DEVENV_JUPYTER": "1" if request.jupyter else "0",
    }
    mounts = [Mount(HOME_MOUNT, handle.volume, type="volume")]
    mounts += [Mount(target, source, type="bind") for source, target in sorted(request.binds.items())]
    published = {port: bound for port, bound in bindings.items() if bound is not None}
    host_config = {
        "mounts": mounts,
        "port_bindings": published or None,
        "nano_cpus": int(request.cpu * 1e9) if request.cpu else None,
        "mem_limit": request.memory,
        "device_requests": device_requests,
        "tmpfs": {SECRETS_DIR: SECRETS_TMPFS},
        "extra_hosts": {ENGINE_HOST_NAME: "host-gateway"},  # the engine's host, reached from any bridge
        "network_mode": network,  # its own network only: never the default bridge other containers share
        "shm_size": request.shm,  # PyTorch's DataLoader workers pass batches through /dev/shm (Docker: 64 MiB)
        "ulimits": ulimits(request.ulimits) or None,
        **security_settings(),
    }
    return ContainerSpec(
        handle.container, network, network_labels(labels), labels, environment, list(bindings), host_config
    )


def ulimits(limits: Mapping[str, int]) -> list[Ulimit]:
    """The spec's process limits, soft = hard (-1: unlimited), for `create_host_config`."""
    return [Ulimit(name=name, soft=value, hard=value) for name, value in sorted(limits.items())]


def limit_refused(error: BackendError, url: str) -> BackendError | None:
    """A start the engine refused because a limit in `resources.ulimits` is above its own hard limit (an engine
    without CAP_SYS_RESOURCE, or one started with a low LimitMEMLOCK): which limit, and how to fix it."""
    found = _RLIMIT_REFUSED.search(error.message)
    if found is None:
        return None
    name = _RLIMIT_NAMES.get(found.group(1), f"rlimit {found.group(1)}")
    return BackendError(
        f"the engine at {url} may not raise the {name} limit as far as `resources.ulimits` asks "
        f"(above its own hard limit)",
        hint=f"lower `resources.ulimits.{name}` in devenv.yaml, or raise the engine's own limit "
        f"(LimitMEMLOCK=infinity / LimitNOFILE= in docker.service), then `devenv start`",
    )


def network_labels(container_labels: Mapping[str, str]) -> dict[str, str]:
    """A workspace network's labels, from its container's: whose it is and who made it, so that a daemon finds
    its own (and an SSH test host the ones it must join)."""
    kept = {
        key: container_labels[key]
        for key in (LABEL_WORKSPACE, LABEL_OWNER, LABEL_BACKEND, LABEL_DAEMON)
        if key in container_labels
    }
    return {**kept, LABEL_ROLE: NETWORK_ROLE}
