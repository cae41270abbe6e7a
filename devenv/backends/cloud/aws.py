"""The aws backend: one EC2 GPU instance per workspace, launched from the cheapest offer that fits, then
used as a Docker host over SSH.

    daemon.yaml:
      backends:
        aws: {type: aws, regions: [us-east-1, us-west-2], spot: false, on_stop: stop, ssh_user: ubuntu}

`provision` walks the offers cheapest first (devenv.backends.cloud.offers.placements): a capacity error
moves on to the next zone, a quota error skips the rest of that type in that region, and each try is
reported. The instance boots with devenv's host key and login key (user data), so the first SSH
connection is verified; devenv waits for SSH, then for cloud-init's marker (Docker and the NVIDIA
toolkit installed), and from then on the instance is an SSH Docker host like any other.

Nothing about an instance is stored by the daemon: its tags name its workspace, this daemon (by its
login key) and its price, and a daemon restarted finds them again with one DescribeInstances per region.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv import paths
from devenv.backends.base import HOME_MOUNT, Backend, ExecStream, Handle, LaunchRequest, Observed, ObservedVolume
from devenv.backends.cloud.ec2 import Ec2, Instance, Unavailable
from devenv.backends.cloud.keys import KeyPair, login_key, new_key
from devenv.backends.cloud.offers import Catalogue, load_catalogue, match, placements
from devenv.backends.cloud.user_data import READY_MARKER, cloud_config
from devenv.backends.docker import DockerBackend
from devenv.backends.ssh.known_hosts import KnownHosts
from devenv.backends.ssh.session import SshSession, load_private_key
from devenv.backends.ssh.target import SshTarget
from devenv.errors import BackendError, DevenvError, EngineUnreachable, HostKeyChanged, NoCapacity, UsageError
from devenv.progress import Progress, emit

if TYPE_CHECKING:
    from devenv.spec.units import GpuRequest


def catalogue_path() -> Path:
    """A refreshed catalogue (`devenv offers --refresh`) replaces the shipped one for this daemon."""
    return paths.home_dir() / "offers" / "aws.json"


def current_catalogue() -> Catalogue:
    path = catalogue_path()
    return load_catalogue(path if path.exists() else None)


class AwsBackend:
    """Backend + Provisioner: workspaces on EC2 instances devenv launches, stops and terminates."""

    supports_gpu = True

    def __init__(
        self,
        name: str = "aws",
        *,
        regions: list[str] | None = None,
        endpoint_url: str | None = None,
        spot: bool = False,
        on_stop: str = "stop",
        ssh_user: str = "ubuntu",
        address_map: Mapping[str, str] | None = None,
        ami: str | dict[str, str] | None = None,
        ssh_cidr: str = "0.0.0.0/0",
        max_price: float | None = None,
        root_gib: int = 200,
        ready_timeout: float = 1800,
    ) -> None:
        if on_stop not in ("stop", "terminate"):
            raise UsageError(
                f"backends.{name}.on_stop: {on_stop!r}; use stop (keeps the disk, and the home on it) "
                "or terminate (cheapest; the home is lost)"
            )
        self.name = name
        self.regions = list(regions or current_catalogue().regions())
        self.url = endpoint_url or f"aws ({', '.join(self.regions)})"
        self.spot, self.on_stop, self.ssh_user = spot, on_stop, ssh_user
        self.address_map = dict(address_map or {})
        self.max_price = max_price
        self.ready_timeout = ready_timeout
        self.login: KeyPair = login_key(paths.home_dir() / "cloud")
        daemon = hashlib.sha256(self.login.public_base64.encode()).hexdigest()[:16]  # this daemon's instances
        self.ec2 = Ec2(endpoint_url=endpoint_url, daemon=daemon, ami=ami, ssh_cidr=ssh_cidr, root_gib=root_gib)
        self.known_hosts = KnownHosts(paths.home_dir() / "known_hosts")
        self._hosts: dict[str, tuple[Instance, DockerBackend]] = {}  # by workspace
        self._seen: dict[str, Instance] = {}  # by workspace, from the last listing (prices for `devenv ls`)
        self._lock = threading.Lock()

    # -- Provisioner ---------------------------------------------------------------------------

    def provision(self, workspace: str, gpu: GpuRequest | None, progress: Progress | None = None) -> None:
        with self._lock:
            known = self._hosts.get(workspace)
        if known is not None:
            try:
                known[1].ping()
                return
            except DevenvError:
                self._forget(workspace)  # stopped or gone behind devenv's back: look again
        found = self.ec2.instances(self.regions, workspace)
        instance = found[0] if found else self._launch(workspace, gpu, progress)
        if instance.state == "stopping":
            instance = self.ec2.wait(instance, "stopped")
        if instance.state == "stopped":
            emit(progress, "phase", f"starting instance {instance.id} ({instance.instance_type}, {instance.zone})")
            self.ec2.start(instance)
        if instance.state != "running" or not instance.address:
            instance = self.ec2.wait(
                instance,
                "running",
                tick=lambda now, waited: emit(progress, "log", f"instance {now.id} is {now.state} ({waited:.0f}s)"),
            )
        backend = self._connect(instance, progress)
        with self._lock:
            self._hosts[workspace] = (instance, backend)
            self._seen[workspace] = instance

    def _launch(self, workspace: str, gpu: GpuRequest | None, progress: Progress | None) -> Instance:
        offers = match(current_catalogue(), gpu, spot=self.spot, regions=self.regions, max_price=self.max_price)
        if not offers:
            raise NoCapacity(
                f"no {('spot ' if self.spot else '')}offer in {', '.join(self.regions)} has "
                f"{gpu or 'the asked'} GPUs" + (f" under ${self.max_price}/h" if self.max_price else ""),
                hint=f"`devenv offers --gpu {gpu}` lists what exists; widen `regions:` of the aws backend",
            )
        host_key = new_key("devenv-host")
        user_data = cloud_config(host_key=host_key, login=self.login, user=self.ssh_user)
        tries: list[str] = []
        skipped: set[tuple[str, str]] = set()
        for placement in placements(offers):
            if (placement.instance_type, placement.region) in skipped:
                continue
            price = placement.offer.price(self.spot)
            emit(
                progress,
                "phase",
                f"launching {placement.instance_type} in {placement.zone} (${price:.3f}/h"
                f"{' spot' if self.spot else ''})",
            )
            try:
                instance = self.ec2.launch(
                    placement, workspace=workspace, user_data=user_data, spot=self.spot, host_key=host_key.public_base64
                )
            except Unavailable as refused:
                tries.append(f"{placement.instance_type} in {placement.zone}: {refused.message}")
                emit(progress, "phase", f"  {placement.zone}: {refused.message.split('. ')[0]}; trying the next offer")
                if refused.kind == "quota":
                    skipped.add((placement.instance_type, placement.region))
                continue
            emit(
                progress,
                "phase",
                f"launched {instance.id}: {instance.instance_type} in {instance.zone} at ${price:.3f}/h",
            )
            return instance
        raise NoCapacity(
            f"no offer could be launched ({len(tries)} tried): " + "; ".join(tries[-6:]),
            hint="try later, another region (`regions:`), spot, or ask AWS for more quota",
        )

    def _target(self, instance: Instance) -> SshTarget:
        """Where to reach the instance's sshd: its address, unless `address_map` says otherwise (tests, a bastion)."""
        mapped = self.address_map.get(instance.address or "") or self.address_map.get("*") or instance.address or ""
        host, _, port = mapped.partition(":")
        return SshTarget(self.ssh_user, host, int(port or 22))

    def _connect(self, instance: Instance, progress: Progress | None, *, patient: bool = True) -> DockerBackend:
        """Pin the host key the instance was given, wait for its sshd, then for cloud-init's marker (once only,
        not patient: the reconciler must not wait on a machine that does not answer)."""
        target = self._target(instance)
        host_key = instance.host_key
        if host_key and host_key not in self.known_hosts.pinned_keys(target):
            self.known_hosts.forget(target)  # a pin at this address is an older machine's: devenv knows this one's
            self.known_hosts.add_line(target, "ssh-ed25519", host_key)
        session = SshSession(
            target, load_private_key(self.login.private, source="devenv's cloud key"), self.known_hosts
        )
        started = time.monotonic()
        step = "SSH"
        while True:
            waited = time.monotonic() - started
            try:
                if step == "SSH":
                    session.transport()
                    step = "cloud-init"
                ready = session.run(f"test -f {READY_MARKER}")
                if ready.exit_code == 0:
                    break
            except HostKeyChanged:
                session.close()
                raise
            except DevenvError as error:
                if waited > self.ready_timeout or not patient:
                    session.close()
                    raise EngineUnreachable(f"instance {instance.id} at {target.url}: {error.message}") from error
            if waited > self.ready_timeout or not patient:
                session.close()
                raise BackendError(
                    f"instance {instance.id} at {target.url} is not ready after {waited:.0f}s "
                    f"({READY_MARKER} missing: cloud-init failed?)",
                    hint="look at /var/log/cloud-init-output.log on the instance",
                )
            what = "waiting for SSH" if step == "SSH" else "installing Docker and the NVIDIA toolkit (cloud-init)"
            emit(progress, "log", f"{instance.id}: {what} ({waited:.0f}s)")
            time.sleep(1.0)
        emit(progress, "phase", f"instance {instance.id} is ready at {target.url}")
        backend = DockerBackend(self.name, session=session)
        backend.ping()
        return backend

    def host(self, workspace: str) -> DockerBackend:
        with self._lock:
            known = self._hosts.get(workspace)
        if known is not None:
            return known[1]
        found = [item for item in self.ec2.instances(self.regions, workspace) if item.state == "running"]
        if not found:
            raise BackendError(
                f"workspace {workspace} has no running instance on {self.name}",
                hint=f"`devenv start {workspace}` starts it",
            )
        backend = self._connect(found[0], None, patient=False)
        with self._lock:
            self._hosts[workspace] = (found[0], backend)
        return backend

    def park(self, workspace: str) -> None:
        for instance in self.ec2.instances(self.regions, workspace):
            self._forget(workspace)
            if self.on_stop == "terminate":
                self.ec2.terminate(instance, keep_volumes=False)
            elif instance.state in ("pending", "running"):
                self.ec2.stop(instance)
                self.ec2.wait(instance, "stopped")

    def release(self, workspace: str, *, keep_volume: bool) -> None:
        for instance in self.ec2.instances(self.regions, workspace):
            self._forget(workspace)
            self.ec2.terminate(instance, keep_volumes=keep_volume)
            self.ec2.wait(instance, "terminated")
        if not keep_volume:
            for region in self.regions:
                for volume in self.ec2.volumes(region, workspace):
                    if volume.get("State") == "available" and not _kept(volume):
                        self.ec2.delete_volume(region, volume["VolumeId"])

    def price(self, workspace: str) -> float | None:
        with self._lock:
            seen = self._seen.get(workspace)
        return seen.price if seen is not None and seen.state in ("pending", "running") else None

    def machines(self) -> list[dict[str, Any]]:
        """The instances devenv runs for workspaces, for `devenv host ls`: id, type, zone, state, price, and the
        host's facts (GPUs, disk) when it runs."""
        rows = []
        for instance in self.ec2.instances(self.regions):
            facts, error = None, None if instance.state == "running" else f"instance {instance.state}"
            if instance.state == "running":
                try:
                    facts = self.host(instance.workspace).facts()
                except DevenvError as failure:
                    error = failure.message
            rows.append(
                {
                    "name": f"{self.name}:{instance.workspace}",
                    "url": self._target(instance).url,
                    "kind": self.name,
                    "workspace": instance.workspace,
                    "error": error,
                    "facts": facts,
                    "instance": {
                        "id": instance.id,
                        "type": instance.instance_type,
                        "zone": instance.zone,
                        "state": instance.state,
                        "price_per_hour": instance.price,
                    },
                }
            )
        return rows

    def _forget(self, workspace: str) -> None:
        with self._lock:
            known = self._hosts.pop(workspace, None)
            self._seen.pop(workspace, None)
        if known is not None:
            known[1].close()

    # -- Backend: the reconciler's view, one list per instance -----------------------------------

    def ping(self) -> None:
        self.ec2.instances(self.regions[:1])  # credentials and endpoint answer

    def list_workspaces(self) -> list[Observed]:
        instances = self.ec2.instances(self.regions)
        with self._lock:
            self._seen = {instance.workspace: instance for instance in instances}
        observed: list[Observed] = []
        for instance in instances:
            if instance.state == "running":
                observed += self.host(instance.workspace).list_workspaces()
        return observed

    def list_volumes(self) -> list[ObservedVolume]:
        volumes: list[ObservedVolume] = []
        for workspace in [item.workspace for item in self.ec2.instances(self.regions) if item.state == "running"]:
            volumes += self.host(workspace).list_volumes()
        return volumes

    # -- Backend: per workspace, on its instance -------------------------------------------------

    def _on(self, handle: Handle) -> Backend:
        return self.host(handle.workspace)

    def ensure_volume(self, workspace: str, owner: str, image_hash: str | None = None) -> str:
        return self.host(workspace).ensure_volume(workspace, owner, image_hash)

    def create(self, request: LaunchRequest) -> Handle:
        return self.host(request.workspace).create(request)

    def start(self, handle: Handle) -> Observed:
        return self._on(handle).start(handle)

    def stop(self, handle: Handle, *, timeout: int = 10) -> None:
        self._on(handle).stop(handle, timeout=timeout)

    def remove(self, handle: Handle, *, keep_volume: bool) -> None:
        self.release(handle.workspace, keep_volume=keep_volume)

    def remove_container(self, handle: Handle) -> None:
        self._on(handle).remove_container(handle)

    def put_files(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        self._on(handle).put_files(handle, files)

    def put_secrets(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        self._on(handle).put_secrets(handle, files)

    def exec(
        self,
        handle: Handle,
        argv: list[str],
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
        workdir: str = HOME_MOUNT,
    ) -> ExecStream:
        return self._on(handle).exec(handle, argv, user=user, env=env, workdir=workdir)

    def logs(self, handle: Handle, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        return self._on(handle).logs(handle, follow=follow, tail=tail)

    def internal_address(self, handle: Handle, port: int) -> tuple[str, int]:
        return self._on(handle).internal_address(handle, port)


def _kept(volume: Mapping[str, Any]) -> bool:
    return any(tag.get("Key") == "devenv.kept" for tag in volume.get("Tags", []))
