"""A "cloud-init" for the aws backend's tests: each instance launched in moto becomes a real sshd (an
SshDockerHost) holding the keys from its user data, and its later stops, starts and terminations are mirrored.
See harness.ec2_cloud for the EC2 side and the topology.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import docker
import docker.errors
import yaml

from devenv.backends.base import LABEL_WORKSPACE
from devenv.backends.cloud.ec2 import TAG_WORKSPACE
from harness.ec2_cloud import READY_MARKER, TAG_MANAGED, ec2_client
from harness.ssh_host import SshDockerHost


class CloudInit:
    """Plays cloud-init: each new `devenv.managed=true` instance that moto says is running gets the next free
    host, set up from its cloud-config; later stops, starts and terminations are mirrored on that host.

    Booting an instance installs `ssh_keys.ed25519_*` as sshd's host key, authorizes `ssh_authorized_keys`
    for `user` (next to the fixture's own key, which keeps working), starts sshd with them and, `ready_after`
    seconds later, creates /var/lib/devenv/ready (what runcmd does on a real machine; runcmd itself is not run).
    A free host is kept stopped, like an instance still booting: the daemon cannot meet the fixture's host key
    on the address before the pinned one is in place. Termination clears the host (marker, keys) for reuse.

    The hosts share this machine's engine, so what a workspace made through an instance (its container, home
    volume and network, labelled with the instance's `devenv.workspace`) would outlive the instance: it goes
    when the instance is terminated, as it would with the machine, and at stop() for instances still live
    (the test's cloud goes with the test). Objects with that label already there at boot are left alone.

    A failure in the polling thread stops it; check() and stop() raise it. Stop this before the EC2 endpoint.
    """

    def __init__(
        self,
        ec2_endpoint: str,
        regions: Iterable[str],
        hosts: list[SshDockerHost],
        user: str = "op",
        *,
        interval: float = 0.3,
        ready_after: float = 0.0,
    ) -> None:
        if any(host.user != user for host in hosts):
            raise ValueError(f"the test hosts log in as {hosts[0].user}, not {user}")
        self.endpoint, self.regions, self.hosts, self.user = ec2_endpoint, list(regions), list(hosts), user
        self.interval, self.ready_after = interval, ready_after
        self._lock = threading.Lock()
        self._ignored: set[str] = set()
        self._host: dict[str, SshDockerHost] = {}
        self._mirrored: dict[str, str] = {}  # instance id -> "running", "stopped" or "terminated" on its host
        self._ready_due: dict[str, float] = {}
        self._applied: set[str] = set()
        self._made: dict[str, tuple[str, set[str]]] = {}  # instance id -> its workspace, objects there at boot
        self._engine: docker.DockerClient | None = None
        self._error: BaseException | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}

    # -- the test's side -------------------------------------------------------------------------

    def start(self) -> CloudInit:
        """Note the instances already there (ignored), clear and stop every host, then start polling."""
        for region in self.regions:
            self._ignored |= {instance["InstanceId"] for instance in self._describe(region)}
        for host in self.hosts:
            self._clear(host)
        self._thread = threading.Thread(target=self._run, name="cloud-init", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> CloudInit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop polling (the hosts stay as they are, but what the workspaces of instances made on the engine is
        removed); raises what the thread failed with, if anything."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=90)
        try:
            for instance_id in list(self._made):
                self._remove_made(instance_id)
        finally:
            self.check()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    @property
    def applied(self) -> set[str]:
        """Instances whose cloud-config is done: keys in place and the ready marker made."""
        with self._lock:
            return set(self._applied)

    def host_of(self, instance_id: str) -> SshDockerHost | None:
        with self._lock:
            return self._host.get(instance_id)

    def address_of(self, instance_id: str) -> str | None:
        """The test host address standing for the instance (its public IP, for an `address_map`)."""
        host = self.host_of(instance_id)
        return host.address if host else None

    def state_of(self, instance_id: str) -> str | None:
        """What the instance's host mirrors: "running", "stopped", "terminated", or None (not taken up)."""
        with self._lock:
            return self._mirrored.get(instance_id)

    def wait_applied(self, instance_id: str, timeout: float = 60) -> SshDockerHost:
        self._wait(lambda: instance_id in self._applied, f"{instance_id} to be set up", timeout)
        return self._host[instance_id]

    def wait_state(self, instance_id: str, state: str, timeout: float = 60) -> None:
        self._wait(lambda: self._mirrored.get(instance_id) == state, f"{instance_id}'s host to be {state}", timeout)

    def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            with self._lock:
                if done():
                    return
            if time.monotonic() > deadline or self._halt.is_set():
                raise TimeoutError(f"waited {timeout:.0f}s for {what}")
            time.sleep(0.1)

    # -- the thread's side -----------------------------------------------------------------------

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = ec2_client(self.endpoint, region, retries={"total_max_attempts": 3})
        return self._clients[region]

    def _describe(self, region: str) -> list[dict[str, Any]]:
        pages = (
            self._client(region)
            .get_paginator("describe_instances")
            .paginate(Filters=[{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}])
        )
        return [
            instance for page in pages for reservation in page["Reservations"] for instance in reservation["Instances"]
        ]

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                for region in self.regions:
                    for instance in self._describe(region):
                        if self._halt.is_set():
                            return
                        self._mirror(
                            region, instance["InstanceId"], instance["State"]["Name"], _tag(instance, TAG_WORKSPACE)
                        )
                self._make_ready()
                self._halt.wait(self.interval)
        except BaseException as exc:  # kept for check()/stop(): a test must not wait on a dead thread
            self._error = exc

    def _mirror(self, region: str, instance_id: str, state: str, workspace: str | None = None) -> None:
        if instance_id in self._ignored:
            return
        mirrored = self._mirrored.get(instance_id)
        if mirrored is None:
            if state == "running":
                self._boot(region, instance_id, workspace)
            elif state in ("shutting-down", "terminated"):
                self._ignored.add(instance_id)  # gone before it ever ran here
        elif mirrored == "terminated":
            return
        elif state in ("shutting-down", "terminated"):
            host = self._host[instance_id]
            self._remove_made(instance_id)  # before the host starts again: it must leave those networks first
            self._clear(host)
            with self._lock:
                self._mirrored[instance_id] = "terminated"
                self._ready_due.pop(instance_id, None)
                del self._host[instance_id]
        elif state in ("stopping", "stopped") and mirrored == "running":
            self._host[instance_id].stop()
            with self._lock:
                self._mirrored[instance_id] = "stopped"
        elif state == "running" and mirrored == "stopped":
            self._host[instance_id].start()
            with self._lock:
                self._mirrored[instance_id] = "running"

    def _boot(self, region: str, instance_id: str, workspace: str | None = None) -> None:
        with self._lock:
            taken = {id(host) for host in self._host.values()}
        host = next((host for host in self.hosts if id(host) not in taken), None)
        if host is None:
            raise RuntimeError(
                f"instance {instance_id} is running but all {len(self.hosts)} test hosts are taken: "
                "give CloudInit one host per live instance"
            )
        encoded = (
            self._client(region)
            .describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]
            .get("Value", "")
        )
        text = base64.b64decode(encoded).decode() if encoded else ""
        if not text.startswith("#cloud-config"):
            raise RuntimeError(f"instance {instance_id} has no cloud-config user data: {text[:80]!r}")
        config = yaml.safe_load(text) or {}
        keys = config.get("ssh_keys") or {}
        if "ed25519_private" not in keys or "ed25519_public" not in keys:
            raise RuntimeError(f"instance {instance_id}'s cloud-config has no ssh_keys.ed25519_private/public")
        if workspace:
            self._made[instance_id] = (workspace, self._objects(workspace))
        host.install_host_key(keys["ed25519_private"], keys["ed25519_public"])
        host.authorize(list(config.get("ssh_authorized_keys") or []))
        if host.is_running():
            host.restart()
        else:
            host.start()
        with self._lock:
            self._host[instance_id] = host
            self._mirrored[instance_id] = "running"
            self._ready_due[instance_id] = time.monotonic() + self.ready_after

    def _make_ready(self) -> None:
        for instance_id, due in list(self._ready_due.items()):
            if time.monotonic() >= due and self._mirrored.get(instance_id) == "running":
                self._host[instance_id].run(f"mkdir -p {READY_MARKER.rsplit('/', 1)[0]} && touch {READY_MARKER}")
                with self._lock:
                    del self._ready_due[instance_id]
                    self._applied.add(instance_id)

    def _docker(self) -> docker.DockerClient:
        if self._engine is None:
            self._engine = docker.from_env()
        return self._engine

    def _objects(self, workspace: str) -> set[str]:
        """Ids of the containers, networks and volumes on the engine labelled with `workspace`."""
        client, labelled = self._docker(), _labelled(workspace)
        return (
            {str(item.id) for item in client.containers.list(all=True, filters=labelled)}
            | {str(item.id) for item in client.networks.list(filters=labelled)}
            | {str(item.id) for item in client.volumes.list(filters=labelled)}
        )

    def _remove_made(self, instance_id: str) -> None:
        """Remove what the instance's workspace made on the engine since the instance booted: containers,
        then networks (the hosts, which join each workspace network, are disconnected first), then volumes."""
        with self._lock:
            made = self._made.pop(instance_id, None)
        if made is None:
            return
        workspace, before = made
        client, labelled = self._docker(), _labelled(workspace)
        for container in client.containers.list(all=True, filters=labelled):
            if container.id not in before:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
        for network in client.networks.list(filters=labelled):
            if network.id in before:
                continue
            for host in self.hosts:
                with contextlib.suppress(docker.errors.APIError):
                    client.api.disconnect_container_from_network(host.name, str(network.id), force=True)
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
        for volume in client.volumes.list(filters=labelled):
            if volume.id not in before:
                with contextlib.suppress(docker.errors.NotFound):
                    volume.remove(force=True)

    def _clear(self, host: SshDockerHost) -> None:
        """A host as a fresh instance finds it: no ready marker, no authorized keys but the fixture's; stopped."""
        if not host.is_running():
            host.start()
        host.run(f"rm -f {READY_MARKER}")
        host.authorize([])
        host.stop()


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((tag["Value"] for tag in instance.get("Tags") or [] if tag.get("Key") == key), None)


def _labelled(workspace: str) -> dict[str, str | list[str] | bool]:
    return {"label": f"{LABEL_WORKSPACE}={workspace}"}
