"""Keeping workspaces apart on one engine (DESIGN.md, "The API"): a network each, no-new-privileges,
a reduced capability set and a pids limit.

A workspace's container is attached only to its own user-defined bridge, `devenv-WS-net`. Docker
drops forwarding between two bridges (its DOCKER-ISOLATION chains), so workspace A cannot open a
connection to B's sshd or JupyterLab; the engine's host still reaches every bridge (the daemon's
Jupyter proxy, `host.docker.internal` for the other way), and so does an SSH host's sshd, whose
`direct-tcpip` tunnels start on that host.

Networks are made with small subnets carved from `SUBNETS`: Docker's default pools give each
network a /16 and run out after about thirty, which would cap the workspaces on an engine.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import threading
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from devenv.engine.sdk import APIClient, APIError, IPAMConfig, IPAMPool, NotFound
from devenv.errors import BackendError

NETWORK_ROLE = "network"  # LABEL_ROLE's value on a workspace's network
PIDS_LIMIT = 4096  # processes + threads in one workspace: a fork bomb stops there, not at the host's limit;
# ample for kernels, builds and data-loader workers (a busy JupyterLab with torch runs a few hundred)
SECURITY_OPT = ("no-new-privileges:true",)  # a setuid binary (sudo, su, ping) cannot raise privileges
# The capabilities a workspace keeps; the rest of Docker's default set is dropped: NET_RAW (raw sockets:
# spoofing, ARP games on the bridge), MKNOD (device nodes), FSETID, SETFCAP, SETPCAP (file and process
# capability games).
CAPABILITIES = (
    "CHOWN",  # sshd hands a session's pty to its user; the entrypoint chowns JupyterLab's token file
    "DAC_OVERRIDE",  # root (devenv's execs) writes into dev's 0700 secrets tmpfs and home
    "FOWNER",  # sshd chmods the pty it just gave away; root chmods files dev owns
    "SETUID",
    "SETGID",  # sshd's privilege separation and logins, setpriv to dev for JupyterLab
    "SYS_CHROOT",  # sshd's pre-auth child chroots to /run/sshd
    "KILL",  # the entrypoint stops services; `end-sessions` ends a revoked person's sshd and processes
    "NET_BIND_SERVICE",  # sshd listens on 22
    "AUDIT_WRITE",  # Debian's sshd writes a login record to the audit log for a pty session, and ends the
    # session when it cannot (`linux_audit_write_entry failed`): without it `ssh WS` gets no shell
)
SUBNETS = ipaddress.IPv4Network("172.30.0.0/16")  # where workspace networks' subnets are carved from
SUBNET_PREFIX = 28  # 11 addresses after the gateway: the workspace, and room for what joins it (an SSH test host)
_MTU_OPTION = "com.docker.network.driver.mtu"
_OVERLAP = "overlaps"  # "Pool overlaps with other one on this address space": another create took it first
_TRIES = 16


def network_name(workspace: str) -> str:
    """The workspace's own network, named like its volume (`volume_name`)."""
    return f"devenv-{workspace}-net"


def security_settings() -> dict[str, Any]:
    """HostConfig arguments that confine a workspace's container (for `create_host_config`)."""
    return {
        "cap_drop": ["ALL"],
        "cap_add": list(CAPABILITIES),
        "security_opt": list(SECURITY_OPT),
        "pids_limit": PIDS_LIMIT,
    }


def ensure_network(api: APIClient, name: str, labels: Mapping[str, str], lock: threading.Lock) -> None:
    """Make the network `name` unless it exists (a retry, a daemon restarted mid-create). `lock` is the
    engine's: one daemon's concurrent creates do not pick the same subnet (another daemon's are retried).
    Docker errors propagate: the caller translates them."""
    with lock:
        for attempt in range(_TRIES):
            found = api.networks()
            if any(network.get("Name") == name for network in found):
                return
            subnet = _free_subnet(found, first=attempt == 0)
            options = _mtu_of_default_bridge(found)
            ipam = None
            if subnet is not None:
                pool = IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))
                ipam = IPAMConfig(pool_configs=[pool])
            try:
                api.create_network(
                    name, driver="bridge", labels=dict(labels), ipam=ipam, options=options, check_duplicate=True
                )
                return
            except APIError as error:
                if error.status_code == 409:
                    return  # made meanwhile by another daemon on this engine
                if subnet is None or _OVERLAP not in str(error.explanation or ""):
                    raise
        raise BackendError(
            f"creating network {name}: every subnet tried was taken meanwhile ({_TRIES} tries)",
            hint="try again; other networks are being made on this engine right now",
        )


def remove_network(api: APIClient, name: str) -> None:
    """Remove the network, after disconnecting whatever else joined it (an SSH test host, a debugging
    container): the network is the workspace's, and a stopped container left attached to a removed
    network could not start again."""
    for container in api.containers(all=True, filters={"network": name}):
        with suppress(NotFound):
            api.disconnect_container_from_network(container["Id"], name, force=True)
    with suppress(NotFound):
        api.remove_network(name)


def _free_subnet(networks: list[dict[str, Any]], *, first: bool) -> ipaddress.IPv4Network | None:
    """A subnet of SUBNETS that no network on the engine overlaps (None: all taken, let Docker pick): the first,
    or after a clash with another daemon's create, one of the first free few at random, so they part."""
    size = 2 ** (32 - SUBNET_PREFIX)
    base, last = int(SUBNETS.network_address), int(SUBNETS.broadcast_address)
    blocked: set[int] = set()  # indexes of SUBNETS' /SUBNET_PREFIX blocks that a network on the engine overlaps
    for network in networks:
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if "." not in (config.get("Subnet") or ""):
                continue
            other = ipaddress.IPv4Network(config["Subnet"], strict=False)
            low, high = max(int(other.network_address), base), min(int(other.broadcast_address), last)
            if low <= high:
                blocked.update(range((low - base) // size, (high - base) // size + 1))
    free = (index for index in range(SUBNETS.num_addresses // size) if index not in blocked)
    few = [
        ipaddress.IPv4Network((base + index * size, SUBNET_PREFIX))
        for index in itertools.islice(free, 1 if first else 16)
    ]
    return random.choice(few) if few else None


def _mtu_of_default_bridge(networks: list[dict[str, Any]]) -> dict[str, str] | None:
    """The default bridge's MTU (daemon.json `mtu`), which a user-defined network does not inherit: a
    workspace behind a smaller uplink MTU would otherwise stall on large packets."""
    for network in networks:
        options = network.get("Options") or {}
        if options.get("com.docker.network.bridge.default_bridge") == "true" and options.get(_MTU_OPTION):
            return {_MTU_OPTION: options[_MTU_OPTION]}
    return None
