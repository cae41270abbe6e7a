"""The docker backend: workspaces as containers on any Docker engine (local socket, tcp://, ssh://).

Every SDK call goes through `_engine`, the one place foreign exceptions become devenv errors.
Nothing here touches the engine until a method is called, so an unreachable engine cannot stop
the daemon from starting; and nothing assumes the engine is this machine (no bind mounts).

An engine over SSH (`session`) differs in two ways only: the SDK's calls ride devenv's verified
SSH connection, and a workspace's sshd (and JupyterLab) are reached through tunnels to its address
on its own network (see `isolation`) instead of ports published on the engine's 127.0.0.1, which is not ours.
Images are built on the host that runs them (see `build`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import replace
from typing import Any

from devenv.backends.base import (
    HOME_MOUNT,
    LABEL_BACKEND,
    LABEL_IMAGE_HASH,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_WORKSPACE,
    SECRETS_DIR,
    SSH_PORT,
    ExecStream,
    Handle,
    HostFacts,
    LaunchRequest,
    Observed,
    ObservedVolume,
    volume_name,
)
from devenv.backends.containers import WORKSPACE_UID, container_spec, limit_refused, network_labels
from devenv.backends.docker_images import API_VERSION, DockerImages
from devenv.backends.docker_io import (
    address_of,
    observed_from_inspect,
    observed_from_list,
    staged_name,
    tar_of,
)
from devenv.backends.host_facts import local_runner, probe_host
from devenv.backends.isolation import ensure_network, network_name, remove_network
from devenv.backends.ssh.session import SshSession, session_from_config
from devenv.backends.ssh.tunnels import Tunnels
from devenv.engine.connect import engine_url, is_local_engine
from devenv.engine.errors import creation_error, engine_errors
from devenv.engine.sdk import APIError, DockerClient, NotFound
from devenv.errors import BackendError, Unsupported

# Replaces the secrets with the tar on stdin: old ones go first, so a removed secret is gone too.
_SECRETS_SCRIPT = f"find {SECRETS_DIR} -mindepth 1 -delete && tar -x -f - -C {SECRETS_DIR}"


class DockerBackend(DockerImages):
    """Workspaces on one Docker engine, through the SDK (Backend + GpuCapable; ImageBuilder + Promoter from
    DockerImages)."""

    supports_gpu = True

    def __init__(
        self,
        name: str = "local",
        url: str | None = None,
        *,
        timeout: int = 120,
        identity: str | None = None,
        session: SshSession | None = None,
    ) -> None:
        self.name = name
        if session is None and url is not None and url.startswith("ssh://"):
            session = session_from_config(url, identity)
        self.session = session
        self.url = session.url if session is not None else engine_url(url)
        self.timeout = timeout
        self.tunnels = Tunnels(session) if session is not None else None
        self._client: DockerClient | None = None
        self._client_lock = threading.Lock()
        self._networking = threading.Lock()  # subnets are chosen one create at a time (isolation.ensure_network)
        self._arch: str | None = None
        self._memory: int | None = None

    @property
    def remote(self) -> bool:
        """Reached over SSH: the engine's 127.0.0.1 and its containers' network are the host's, not ours."""
        return self.session is not None

    @property
    def client(self) -> DockerClient:
        """The SDK client, made on first use."""
        with self._client_lock:
            if self._client is None:
                with self._engine("connecting"):
                    if self.session is not None:
                        from devenv.backends.ssh.docker_transport import docker_client

                        self._client = docker_client(self.session, version=API_VERSION, timeout=self.timeout)
                    else:
                        self._client = DockerClient(
                            base_url=self.url, version=API_VERSION, timeout=self.timeout, max_pool_size=32
                        )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self.tunnels is not None:
            self.tunnels.close()
        if self.session is not None:
            self.session.close()

    def _engine(self, action: str, *, ports: tuple[int, ...] = ()) -> AbstractContextManager[None]:
        """SDK failures during `action`, translated by the engine's one boundary, naming this engine."""
        return engine_errors(action, self.url, ports=ports)

    # --- observation: one engine call each ---

    def ping(self) -> None:
        with self._engine("pinging the engine"):
            self.client.api.ping()

    def _mine(self, labels: Mapping[str, str]) -> bool:
        """Made through this backend: one engine can be registered twice (a host that is also local)."""
        made_by = labels.get(LABEL_BACKEND)
        return made_by == self.name or (made_by is None and self.name == "local")  # unlabelled: made before hosts

    def list_workspaces(self) -> list[Observed]:
        with self._engine("listing workspaces"):
            rows = self.client.api.containers(all=True, filters={"label": LABEL_WORKSPACE})
        rows = [row for row in rows if self._mine(row.get("Labels") or {})]
        if self.tunnels is None:
            return [observed_from_list(row) for row in rows]
        found = [self._through_tunnels(observed_from_list(row, exposed=True), address_of(row)) for row in rows]
        self.tunnels.keep_only({seen.container_name for seen in found if seen.running})
        return found

    def _through_tunnels(self, seen: Observed, address: str | None) -> Observed:
        """A remote workspace's ports as this machine reaches them: a tunnel per exposed port."""
        if self.tunnels is None:
            return seen
        if not seen.running or not address:
            return replace(seen, ports={})
        ports = {
            port: self.tunnels.local_port(seen.container_name, address, port, wish=0 if port == SSH_PORT else port)
            for port in seen.ports
        }
        return replace(seen, ports=ports)

    def list_volumes(self) -> list[ObservedVolume]:
        with self._engine("listing volumes"):
            answer = self.client.api.volumes(filters={"label": LABEL_WORKSPACE})
        found = []
        for volume in answer.get("Volumes") or []:
            labels = volume.get("Labels") or {}
            if not self._mine(labels):
                continue
            found.append(
                ObservedVolume(
                    volume["Name"], labels.get(LABEL_WORKSPACE), labels.get(LABEL_OWNER), labels.get(LABEL_IMAGE_HASH)
                )
            )
        return found

    # --- lifecycle ---

    def ensure_volume(self, workspace: str, owner: str, image_hash: str | None = None) -> str:
        name = volume_name(workspace)
        labels = {LABEL_WORKSPACE: workspace, LABEL_OWNER: owner, LABEL_ROLE: "home", LABEL_BACKEND: self.name}
        if image_hash:
            labels[LABEL_IMAGE_HASH] = image_hash
        with self._engine(f"creating volume {name}"):
            self.client.api.create_volume(name, labels=labels)  # the engine answers an existing name as is
        return name

    def create(self, request: LaunchRequest) -> Handle:
        handle = Handle.for_workspace(request.workspace)
        spec = container_spec(request, backend=self.name, remote=self.remote)
        self.ensure_volume(request.workspace, request.owner, request.image_hash)
        with self._engine(f"creating network {spec.network}"):
            ensure_network(self.client.api, spec.network, spec.network_labels, self._networking)
        action = f"creating container {handle.container}"
        try:
            with self._engine(action):
                api = self.client.api
                api.create_container(
                    request.image,
                    name=handle.container,
                    hostname=request.workspace,
                    labels=spec.labels,
                    environment=spec.environment,
                    ports=spec.ports or None,
                    host_config=api.create_host_config(**spec.host_config),
                    # by network name, as the SDK documents: types-docker types it as one EndpointConfig
                    networking_config=api.create_networking_config({spec.network: api.create_endpoint_config()}),  # type: ignore[arg-type]
                )
        except BackendError as error:
            cause = error.__cause__
            meant = creation_error(cause, action, self.url, image=request.image, binds=request.binds)
            if meant is not None:
                raise meant from cause
            if isinstance(cause, APIError) and cause.status_code == 409:
                self.put_files(handle, request.files)  # made already (a retry, or a restart mid-create)
                return handle
            raise
        self.put_files(handle, request.files)
        return handle

    def put_files(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        if not files:
            return
        action = f"placing files in {handle.container}"
        with self._engine(action):
            running = bool(self.client.api.inspect_container(handle.container)["State"].get("Running"))
            staged = {path: staged_name(path) if running else path for path in files}
            self.client.api.put_archive(handle.container, "/", tar_of({staged[p]: data for p, data in files.items()}))
            if running:
                moves = " && ".join(f"mv -f '{staged[path]}' '{path}'" for path in files)
                exec_id = self.client.api.exec_create(handle.container, ["sh", "-c", moves], user="root")["Id"]
                output = self.client.api.exec_start(exec_id)
                if self.client.api.exec_inspect(exec_id).get("ExitCode"):
                    raise BackendError(f"{action} on {self.url}: {output.decode(errors='replace').strip()}")

    def put_secrets(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        archive = tar_of({f"/{name}": data for name, data in files.items()}, mode=0o400, uid=WORKSPACE_UID)
        action = f"placing secrets in {handle.container}"
        with self._engine(action):
            api = self.client.api
            exec_id = api.exec_create(
                handle.container, ["sh", "-c", _SECRETS_SCRIPT], stdin=True, stdout=True, stderr=True, user="root"
            )["Id"]
            sock: Any = api.exec_start(exec_id, socket=True)  # a SocketIO here, a paramiko channel over SSH
            raw = getattr(sock, "_sock", sock)  # the SDK wraps a local socket in a SocketIO; over SSH: a channel
            read = getattr(sock, "read", None) or sock.recv
            try:
                raw.sendall(archive)
                raw.shutdown(socket.SHUT_WR)
                output = b"".join(iter(lambda: read(65536), b""))  # multiplexed frames: only for errors
            finally:
                sock.close()
            code = api.exec_inspect(exec_id).get("ExitCode")
        if code:
            text = output.decode(errors="replace").strip()
            raise BackendError(
                f"{action} on {self.url}: exit {code}: {text[-500:]}",
                hint="the workspace's image may predate devenv's secrets tmpfs: `devenv rebuild`",
            )

    def start(self, handle: Handle) -> Observed:
        try:
            return self._start(handle)
        except BackendError as error:
            refused = limit_refused(error, self.url)
            if refused is None:
                raise
            raise refused from error

    def _start(self, handle: Handle) -> Observed:
        action = f"starting {handle.container}"
        with self._engine(action):
            info = self.client.api.inspect_container(handle.container)
            if not info["State"].get("Running"):
                bound = (info.get("HostConfig") or {}).get("PortBindings") or {}
                ports = tuple(int(key.split("/")[0]) for key in bound)
                with self._engine(action, ports=ports):
                    try:
                        self.client.api.start(handle.container)
                    except APIError as error:
                        network = network_name(handle.workspace)
                        if f"network {network} not found" not in str(error.explanation or ""):
                            raise
                        # `docker network prune` takes a stopped container's network: made again, it starts
                        labels = network_labels((info.get("Config") or {}).get("Labels") or {})
                        ensure_network(self.client.api, network, labels, self._networking)
                        self.client.api.start(handle.container)
                info = self.client.api.inspect_container(handle.container)
        return self._through_tunnels(observed_from_inspect(info, exposed=self.remote), address_of(info))

    def stop(self, handle: Handle, *, timeout: int = 10) -> None:
        # What is already gone (404) needs no stopping or removing: these calls are idempotent.
        with self._engine(f"stopping {handle.container}"), suppress(NotFound):
            self.client.api.stop(handle.container, timeout=timeout)  # a stopped one answers 304: no error

    def remove(self, handle: Handle, *, keep_volume: bool) -> None:
        self.remove_container(handle)
        if not keep_volume:
            with self._engine(f"removing volume {handle.volume}"), suppress(NotFound):
                self.client.api.remove_volume(handle.volume)

    def remove_container(self, handle: Handle) -> None:
        """The container and its network: a network lives as long as its container (`create` makes both)."""
        with self._engine(f"removing {handle.container}"), suppress(NotFound):
            self.client.api.remove_container(handle.container, force=True)
        network = network_name(handle.workspace)
        with self._engine(f"removing network {network}"):
            remove_network(self.client.api, network)

    # --- inside a workspace ---

    def exec(
        self,
        handle: Handle,
        argv: list[str],
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
        workdir: str = HOME_MOUNT,
    ) -> ExecStream:
        action = f"running {argv[0] if argv else 'a command'} in {handle.container}"
        with self._engine(action):
            exec_id = self.client.api.exec_create(
                handle.container,
                argv,
                stdout=True,
                stderr=True,
                user=user,
                environment=dict(env or {}),
                workdir=workdir,
            )["Id"]
            frames = self.client.api.exec_start(exec_id, stream=True, demux=True)

        def chunks() -> Iterator[tuple[str, bytes]]:
            with self._engine(action):
                for stdout, stderr in frames:
                    if stdout:
                        yield "stdout", stdout
                    if stderr:
                        yield "stderr", stderr

        def exit_code() -> int:
            with self._engine(action):
                return int(self.client.api.exec_inspect(exec_id).get("ExitCode") or 0)

        return ExecStream(chunks(), exit_code)

    def internal_address(self, handle: Handle, port: int) -> tuple[str, int]:
        """Where the daemon reaches an unpublished port: the container's own address when the engine is
        on this machine, a tunnel's local end when it is reached over SSH."""
        if self.tunnels is None and not is_local_engine(self.url):
            raise Unsupported(
                f"reaching port {port} inside {handle.container}: engine {self.url} is not on this "
                f"machine, so its containers' network is out of the daemon's reach",
                hint="register the machine as an SSH host (`devenv host add`), which tunnels to it",
            )
        with self._engine(f"reaching {handle.container}"):
            info = self.client.api.inspect_container(handle.container)
        if not (info.get("State") or {}).get("Running"):
            raise BackendError(f"reaching {handle.container} on {self.url}: the container is not running")
        address = address_of(info)
        if not address:
            raise BackendError(f"reaching {handle.container} on {self.url}: the container has no network address")
        if self.tunnels is not None:
            return "127.0.0.1", self.tunnels.local_port(handle.container, address, port)
        return address, port

    def logs(self, handle: Handle, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        action = f"reading the output of {handle.container}"
        with self._engine(action):
            stream = self.client.api.logs(
                handle.container, stream=True, follow=follow, tail="all" if tail is None else tail
            )

        def chunks() -> Iterator[bytes]:
            with self._engine(action):
                yield from stream

        return chunks()

    # --- HostInspectable, HostMemory ---

    def host_memory(self) -> int | None:
        """The engine machine's memory (`docker info` MemTotal), asked once: the default /dev/shm is sized by it."""
        if self._memory is None:
            with self._engine("asking the engine about its memory"):
                self._memory = int(self.client.api.info().get("MemTotal") or 0)
        return self._memory or None

    def facts(self) -> HostFacts:
        with self._engine("asking the engine about its machine"):
            info = self.client.api.info()
        run = self.session.run if self.session is not None else local_runner(self.url)
        return probe_host(info, self.list_workspaces(), run)
