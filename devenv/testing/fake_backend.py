"""An in-memory Backend for unit tests of the daemon, keeping every rule of `devenv.backends.base`.

It behaves like one Docker engine: deterministic names, idempotent create/ensure_volume/remove,
ports held by running containers, home volumes that outlive containers. Tests steer it from the
outside: `reachable`, `fail_next`, `vanish`, `exit`, `exec_handler`; `calls` counts every method
call, so a test can assert one list call per reconciler pass. Thread-safe: the daemon calls
backends from many threads.
"""

from __future__ import annotations

import functools
import itertools
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from devenv.backends.base import (
    HOME_MOUNT,
    SSH_PORT,
    ExecStream,
    Handle,
    LaunchRequest,
    Observed,
    ObservedVolume,
    volume_name,
)
from devenv.errors import BackendError, EngineUnreachable, PortInUse
from devenv.testing.fake_images import FakeImages
from devenv.testing.fake_shell import ExecResult, FakeContainer, FakeShell, FakeVolume

if TYPE_CHECKING:
    pass

# What a command answers: (exit code, stdout, stderr).
# Called first with (workspace, argv); returns an ExecResult, or None to let the built-in language answer.
ExecHandler = Callable[[str, list[str]], ExecResult | None]

FAKE_MEMORY = 16 * 1024**3  # the fake engine's machine, as `docker info` MemTotal says (tests may change it)
# `ulimit -X` in bash: the limit's name and the unit it prints in (bytes per unit)
_EPHEMERAL_PORTS = 49153  # where the engine's ephemeral host ports start, as on Docker


QUEUED = "PENDING (Resources)"  # a queued start's detail, as the slurm backend words it


class FakeBackend(FakeImages):
    """A Backend (+ GpuCapable; ImageBuilder and Promoter from FakeImages) held in memory. `images=None` accepts
    every image."""

    supports_gpu = True

    def __init__(
        self,
        name: str = "fake",
        url: str = "fake://engine",
        *,
        images: Iterable[str] | None = None,
        exec_handler: ExecHandler | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.reachable = True
        self.exec_handler = exec_handler
        self.calls: Counter[str] = Counter()
        FakeImages.__init__(self, images)
        self.services: dict[tuple[str, int], tuple[str, int]] = {}  # (workspace, port) -> a stand-in server
        self.memory: int | None = FAKE_MEMORY  # what host_memory answers (None: unknown)
        self._containers: dict[str, FakeContainer] = {}
        self._volumes: dict[str, FakeVolume] = {}
        self._failures: defaultdict[str, list[Exception]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._host_ports = itertools.count(_EPHEMERAL_PORTS)
        self._queued: dict[str, int] = {}  # workspace -> listings its next start waits, as a batch queue's job
        self._lock = threading.RLock()

    # --- steering, for tests ---

    def fail_next(self, method: str, exc: Exception) -> None:
        """Make the next call of `method` raise `exc` (once; several queue up in order)."""
        with self._lock:
            self._failures[method].append(exc)

    def vanish(self, workspace: str) -> None:
        """Delete the workspace's container behind the daemon's back (its volume stays)."""
        with self._lock:
            self._containers.pop(Handle.for_workspace(workspace).container, None)

    def exit(self, workspace: str, code: int) -> None:
        """Make the workspace's container exit on its own with `code`."""
        with self._lock:
            container = self._containers[Handle.for_workspace(workspace).container]
            container.status, container.detail, container.ports = "exited", f"Exited ({code})", {}

    def queue_next_start(self, workspace: str, listings: int) -> None:
        """Make the workspace's next start a batch job's: `created` ("PENDING (Resources)") until `listings`
        more list calls have looked at it, then running."""
        with self._lock:
            self._queued[workspace] = listings

    def fail_host(self, workspace: str, detail: str) -> None:
        """The workspace's host fails under it (a Slurm node down): its container is dead, `detail` says why."""
        with self._lock:
            container = self._containers[Handle.for_workspace(workspace).container]
            container.status, container.detail, container.ports = "dead", detail, {}

    def _enter(self, method: str) -> None:
        """Count the call, then answer like the engine would before doing anything."""
        self.calls[method] += 1
        if not self.reachable:
            raise EngineUnreachable(
                f"the Docker engine at {self.url} does not answer (fake: unreachable)", hint="set reachable = True"
            )
        if self._failures[method]:
            raise self._failures[method].pop(0)

    # --- observation ---

    def ping(self) -> None:
        with self._lock:
            self._enter("ping")

    def list_workspaces(self) -> list[Observed]:
        with self._lock:
            self._enter("list_workspaces")
            for container in self._containers.values():
                waits = self._queued.get(container.request.workspace)
                if waits is not None and container.detail == QUEUED:
                    self._queued[container.request.workspace] = waits - 1
                    if waits <= 1:
                        del self._queued[container.request.workspace]
                        self._run_container(container)
            return [self._observed(c) for c in self._containers.values()]

    def list_volumes(self) -> list[ObservedVolume]:
        with self._lock:
            self._enter("list_volumes")
            return [ObservedVolume(v.name, v.workspace, v.owner, v.image_hash) for v in self._volumes.values()]

    # --- lifecycle ---

    def ensure_volume(self, workspace: str, owner: str, image_hash: str | None = None) -> str:
        with self._lock:
            self._enter("ensure_volume")
            return self._ensure_volume(workspace, owner, image_hash)

    def _ensure_volume(self, workspace: str, owner: str, image_hash: str | None = None) -> str:
        name = volume_name(workspace)
        self._volumes.setdefault(name, FakeVolume(name, workspace, owner, image_hash=image_hash))
        return name

    def create(self, request: LaunchRequest) -> Handle:
        with self._lock:
            self._enter("create")
            handle = Handle.for_workspace(request.workspace)
            self._ensure_volume(request.workspace, request.owner, request.image_hash)
            if handle.container in self._containers:
                return handle
            if self.images is not None and request.image not in self.images:
                raise BackendError(
                    f"creating container {handle.container} on {self.url}: the image "
                    f"{request.image} is not on this engine",
                    hint="rebuild the workspace's image (`devenv build`), then try again",
                )
            self._containers[handle.container] = FakeContainer(f"fake{next(self._ids):060d}", request, handle)
            self._containers[handle.container].files.update(request.files)
            return handle

    def put_files(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        with self._lock:
            self._enter("put_files")
            self._get(handle, "placing files in").files.update(files)

    def put_secrets(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        with self._lock:
            self._enter("put_secrets")
            container = self._running(handle, "placing secrets in", "placing secrets in")
            container.secrets = dict(files)

    def secrets(self, workspace: str) -> dict[str, bytes]:
        """What the daemon placed on the workspace's secrets tmpfs (for tests)."""
        with self._lock:
            return dict(self._containers[Handle.for_workspace(workspace).container].secrets)

    def launched(self, workspace: str) -> LaunchRequest:
        """The request the workspace's container was created with: its shm, ulimits, memory... (for tests)."""
        with self._lock:
            return self._containers[Handle.for_workspace(workspace).container].request

    def host_memory(self) -> int | None:
        with self._lock:
            self._enter("host_memory")
            return self.memory

    def files(self, workspace: str) -> dict[str, bytes]:
        """What the daemon placed in the workspace's container (for tests)."""
        with self._lock:
            return dict(self._containers[Handle.for_workspace(workspace).container].files)

    def start(self, handle: Handle) -> Observed:
        with self._lock:
            self._enter("start")
            container = self._get(handle, "starting")
            if container.status not in ("running", "restarting"):
                wanted = {port: port for port in container.request.ports}
                held = {host for c in self._containers.values() if c.status == "running" for host in c.ports.values()}
                for port in wanted:
                    if port in held:
                        raise PortInUse(
                            f"starting {handle.container} on {self.url}: port {port} on the engine's 127.0.0.1 "
                            "is already in use",
                            hint="pick another port under `ports:` in devenv.yaml, or stop what uses it",
                        )
                if self._queued.get(container.request.workspace):
                    container.status, container.detail = "created", QUEUED
                    return self._observed(container)
                self._run_container(container)
            return self._observed(container)

    def _run_container(self, container: FakeContainer) -> None:
        wanted = {port: port for port in container.request.ports}
        if container.request.ssh:
            wanted[SSH_PORT] = next(self._host_ports)
        container.status, container.detail, container.ports = "running", "Up", wanted
        if container.request.ssh:
            container.log.append(b"Server listening on 0.0.0.0 port 22.\n")

    def stop(self, handle: Handle, *, timeout: int = 10) -> None:
        with self._lock:
            self._enter("stop")
            container = self._containers.get(handle.container)
            if container is not None and container.status in ("running", "restarting", "paused"):
                container.status, container.detail, container.ports = "exited", "Exited (143)", {}  # SIGTERM
                container.secrets = {}  # a tmpfs does not outlive the container's run

    def remove(self, handle: Handle, *, keep_volume: bool) -> None:
        with self._lock:
            self._enter("remove")
            self._containers.pop(handle.container, None)
            if not keep_volume:
                self._volumes.pop(handle.volume, None)

    def remove_container(self, handle: Handle) -> None:
        with self._lock:
            self._enter("remove_container")
            self._containers.pop(handle.container, None)

    def _get(self, handle: Handle, action: str) -> FakeContainer:
        container = self._containers.get(handle.container)
        if container is None:
            raise BackendError(f"{action} {handle.container} on {self.url}: No such container: {handle.container}")
        return container

    def _running(self, handle: Handle, action: str, doing: str) -> FakeContainer:
        """The container, which must be running (as the engine says when it is not)."""
        container = self._get(handle, action)
        if container.status != "running":
            raise BackendError(f"{doing} {handle.container} on {self.url}: Container {container.id} is not running")
        return container

    def _observed(self, container: FakeContainer) -> Observed:
        request = container.request
        return Observed(
            workspace=request.workspace,
            container_id=container.id,
            container_name=container.handle.container,
            status=container.status,
            owner=request.owner,
            image_hash=request.image_hash,
            ports=dict(container.ports),
            detail=container.detail,
            daemon=request.daemon,
            gpu_ids=request.gpu_ids,
            image_id=f"sha256:{request.image_hash}",  # as build() names it
        )

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
        with self._lock:
            self._enter("exec")
            container = self._running(handle, "running a command in", f"running {argv[0] if argv else 'a command'} in")
            result = self.exec_handler(container.request.workspace, list(argv)) if self.exec_handler else None
            if result is None:
                result = FakeShell(
                    container,
                    self._volumes[handle.volume],
                    workdir,
                    user=user,
                    env={**container.request.env, **(env or {})},
                ).run(argv)
        code, out, err = result
        chunks = [(name, data) for name, data in (("stdout", out), ("stderr", err)) if data]
        return ExecStream(iter(chunks), lambda: code)

    def internal_address(self, handle: Handle, port: int) -> tuple[str, int]:
        """`services[(workspace, port)]` when a test runs a stand-in server there; sshd's greeting on SSH_PORT
        of a workspace with SSH; else a closed port."""
        with self._lock:
            self._enter("internal_address")
            container = self._running(handle, "reaching", "reaching")
            served = self.services.get((container.request.workspace, port))
            if served is None and port == SSH_PORT and container.request.ssh:
                return _ssh_greeter()
            return served or ("127.0.0.1", 9)

    def logs(self, handle: Handle, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        with self._lock:
            self._enter("logs")
            log = list(self._get(handle, "reading the output of").log)
        return iter(log if tail is None else log[len(log) - tail :] if tail > 0 else [])

    # --- ImageBuilder ---


@functools.cache
def _ssh_greeter() -> tuple[str, int]:
    """A loopback server that greets every connection as sshd does, then closes it (one for the process)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"SSH-2.0-devenv-fake\r\n")

    threading.Thread(target=serve, name="fake-sshd-greeter", daemon=True).start()
    address = listener.getsockname()
    return str(address[0]), int(address[1])
