"""Where test servers must listen so that workspace containers can reach them.

Workspaces map `host.docker.internal` to Docker's `host-gateway`, which is the default bridge's gateway
address on the engine's host. Inside a container 127.0.0.1 is the container itself, so a server the
container must reach binds to that gateway address instead.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from devenv.engine.sdk import DockerClient, NotFound

ENGINE_HOST_NAME = "host.docker.internal"
# What devenv passes as `extra_hosts` so that ENGINE_HOST_NAME resolves inside a container (Docker 20.10+).
ENGINE_HOST_MAPPING = {ENGINE_HOST_NAME: "host-gateway"}


def engine_host_address(client: DockerClient) -> str:
    """The default bridge's gateway IPv4: what `host-gateway` (and so ENGINE_HOST_NAME) resolves to.

    Docker reports the gateway in the bridge's IPAM config only when it was configured (`bip`, or an
    existing docker0 address at start); otherwise its IPAM gave the bridge the subnet's first host
    address, which is what we return then.
    """
    try:
        attrs: dict[str, Any] = client.api.inspect_network("bridge")
    except NotFound as exc:
        raise RuntimeError(
            f"the Docker engine has no default 'bridge' network; containers cannot reach its host as {ENGINE_HOST_NAME}"
        ) from exc
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        gateway = (config.get("Gateway") or "").split("/")[0]
        if gateway and ipaddress.ip_address(gateway).version == 4:
            return gateway
        subnet = config.get("Subnet") or ""
        if subnet and ipaddress.ip_network(subnet, strict=False).version == 4:
            return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    raise RuntimeError(f"the default 'bridge' network reports no IPv4 gateway or subnet: {attrs.get('IPAM')!r}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a daemon's --listen, a test server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
