"""An in-memory Backend for unit tests of the daemon, keeping every rule of `devenv.backends.base`.

It behaves like one Docker engine: deterministic names, idempotent create/ensure_volume/remove,
ports held by running containers, home volumes that outlive containers. Tests steer it from the
outside: `reachable`, `fail_next`, `vanish`, `exit`, `exec_handler`; `calls` counts every method
call, so a test can assert one list call per reconciler pass. Thread-safe: the daemon calls
backends from many threads.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import posixpath
import shlex
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devenv.backends.base import (
    HOME_MOUNT,
    SECRETS_DIR,
    SSH_PORT,
    ContainerStatus,
    ExecStream,
    Handle,
    LaunchRequest,
    Observed,
    ObservedVolume,
    volume_name,
)
from devenv.errors import BackendError, EngineUnreachable, PortInUse

if TYPE_CHECKING:
    from devenv.build.builder import BuildResult
    from devenv.build.project import Project
    from devenv.progress import Progress

# What a command answers: (exit code, stdout, stderr).
ExecResult = tuple[int, bytes, bytes]
# Called first with (workspace, argv); returns an ExecResult, or None to let the built-in language answer.
ExecHandler = Callable[[str, list[str]], ExecResult | None]

FAKE_ARCH = "x86_64"
FAKE_MEMORY = 16 * 1024**3  # the fake engine's machine, as `docker info` MemTotal says (tests may change it)
DOCKER_SHM = 64 * 1024**2  # /dev/shm when a request names no size
# `ulimit -X` in bash: the limit's name and the unit it prints in (bytes per unit)
_ULIMIT_FLAGS = {"-l": ("memlock", 1024), "-s": ("stack", 1024), "-c": ("core", 1024), "-n": ("nofile", 1),
                 "-u": ("nproc", 1)}
_EPHEMERAL_PORTS = 49153  # where the engine's ephemeral host ports start, as on Docker


@dataclass
class _Container:
    id: str
    request: LaunchRequest
    handle: Handle
    status: ContainerStatus = "created"
    detail: str = "Created"
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port, while running
    log: list[bytes] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # outside the home volume: lost on remove
    secrets: dict[str, bytes] = field(default_factory=dict)  # the tmpfs: lost on stop


@dataclass
class _Volume:
    name: str
    workspace: str
    owner: str
    files: dict[str, bytes] = field(default_factory=dict)
    image_hash: str | None = None


class FakeBackend:
    """A Backend (+ ImageBuilder, GpuCapable) held in memory. `images=None` accepts every image."""

    supports_gpu = True

    def __init__(self, name: str = "fake", url: str = "fake://engine", *, images: Iterable[str] | None = None,
                 exec_handler: ExecHandler | None = None) -> None:
        self.name = name
        self.url = url
        self.reachable = True
        self.exec_handler = exec_handler
        self.calls: Counter[str] = Counter()
        self.images: set[str] | None = None if images is None else set(images)
        self.locked: list[Project] = []
        self.services: dict[tuple[str, int], tuple[str, int]] = {}  # (workspace, port) -> a stand-in server
        self.memory: int | None = FAKE_MEMORY  # what host_memory answers (None: unknown)
        self._containers: dict[str, _Container] = {}
        self._volumes: dict[str, _Volume] = {}
        self._failures: defaultdict[str, list[Exception]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._host_ports = itertools.count(_EPHEMERAL_PORTS)
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

    def _enter(self, method: str) -> None:
        """Count the call, then answer like the engine would before doing anything."""
        self.calls[method] += 1
        if not self.reachable:
            raise EngineUnreachable(f"the Docker engine at {self.url} does not answer (fake: unreachable)",
                                    hint="set reachable = True")
        if self._failures[method]:
            raise self._failures[method].pop(0)

    # --- observation ---

    def ping(self) -> None:
        with self._lock:
            self._enter("ping")

    def list_workspaces(self) -> list[Observed]:
        with self._lock:
            self._enter("list_workspaces")
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
        self._volumes.setdefault(name, _Volume(name, workspace, owner, image_hash=image_hash))
        return name

    def create(self, request: LaunchRequest) -> Handle:
        with self._lock:
            self._enter("create")
            handle = Handle.for_workspace(request.workspace)
            self._ensure_volume(request.workspace, request.owner, request.image_hash)
            if handle.container in self._containers:
                return handle
            if self.images is not None and request.image not in self.images:
                raise BackendError(f"creating container {handle.container} on {self.url}: the image "
                                   f"{request.image} is not on this engine",
                                   hint="rebuild the workspace's image (`devenv build`), then try again")
            self._containers[handle.container] = _Container(f"fake{next(self._ids):060d}", request, handle)
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
                if container.request.ssh:
                    wanted[SSH_PORT] = next(self._host_ports)
                container.status, container.detail, container.ports = "running", "Up", wanted
                if container.request.ssh:
                    container.log.append(b"Server listening on 0.0.0.0 port 22.\n")
            return self._observed(container)

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

    def _get(self, handle: Handle, action: str) -> _Container:
        container = self._containers.get(handle.container)
        if container is None:
            raise BackendError(f"{action} {handle.container} on {self.url}: No such container: {handle.container}")
        return container

    def _running(self, handle: Handle, action: str, doing: str) -> _Container:
        """The container, which must be running (as the engine says when it is not)."""
        container = self._get(handle, action)
        if container.status != "running":
            raise BackendError(f"{doing} {handle.container} on {self.url}: Container {container.id} is not running")
        return container

    def _observed(self, container: _Container) -> Observed:
        request = container.request
        return Observed(
            workspace=request.workspace, container_id=container.id, container_name=container.handle.container,
            status=container.status, owner=request.owner, image_hash=request.image_hash,
            ports=dict(container.ports), detail=container.detail, daemon=request.daemon, gpu_ids=request.gpu_ids,
            image_id=f"sha256:{request.image_hash}",  # as build() names it
        )

    # --- inside a workspace ---

    def exec(self, handle: Handle, argv: list[str], *, user: str = "dev",
             env: Mapping[str, str] | None = None, workdir: str = HOME_MOUNT) -> ExecStream:
        with self._lock:
            self._enter("exec")
            container = self._running(handle, "running a command in",
                                      f"running {argv[0] if argv else 'a command'} in")
            result = self.exec_handler(container.request.workspace, list(argv)) if self.exec_handler else None
            if result is None:
                result = _Shell(container, self._volumes[handle.volume], workdir, user=user,
                                env={**container.request.env, **(env or {})}).run(argv)
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
        return iter(log if tail is None else log[len(log) - tail:] if tail > 0 else [])

    # --- ImageBuilder ---

    def build(self, project: Project, progress: Progress | None = None) -> BuildResult:
        """The tag a real build would make (from the project's plan), recorded without any engine."""
        from devenv.build.builder import BuildResult
        from devenv.build.project import checked_lock, project_plan

        with self._lock:
            self._enter("build")
        plan = project_plan(project, checked_lock(project, FAKE_ARCH), provenance=False)
        with self._lock:
            if self.images is None:
                self.images = set()
            cached = plan.tag in self.images
            self.images.add(plan.tag)
        return BuildResult(plan.tag, f"sha256:{plan.image_hash}", cached=cached, seconds=0.0)

    def lock(self, project: Project, progress: Progress | None = None) -> None:
        """Write a devenv.lock that matches the spec, pinning no packages (nothing is resolved)."""
        with self._lock:
            self._enter("lock")
            self.locked.append(project)
        write_fake_lock(project)


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


def write_fake_lock(project: Project) -> None:
    """A lock that `checked_lock` accepts for `project`, with a made-up base and no packages."""
    from devenv.build.project import lock_inputs
    from devenv.lock.lockfile import write_lock
    from devenv.lock.models import BaseImage, Lock

    inputs = lock_inputs(project, FAKE_ARCH)
    recipe = project.recipe
    digest = hashlib.sha256(f"fake-base-{recipe.name}".encode()).hexdigest()
    base = BaseImage(recipe=recipe.name, image=f"devenv/base:{recipe.name}-fake", digest=f"sha256:{digest}",
                     source="bootstrap", upstream="fake", python=recipe.python)
    lock = Lock(resolved_at="2024-01-01T00:00:00Z", inputs=inputs, base=base, apt=[], python=[], tooling=[])
    write_lock(lock, project.lock_path)


class _Shell:
    """A tiny shell: `true`, `false`, `echo WORDS [>&2 | > FILE | >> FILE]`, `cat FILE`, `exit N`, joined by `;`;
    `mkdir`, `ulimit -l|-s|-c|-n|-u` and `df -B1 --output=size /dev/shm` answer from the LaunchRequest;
    `id -un`, `pwd` and `printenv NAME` from the exec's user, workdir and environment; `stat -c '%a %U' FILE`.

    Files under HOME_MOUNT live in the home volume (they outlive the container); others in the container.
    """

    def __init__(self, container: _Container, volume: _Volume, workdir: str, *, user: str = "dev",
                 env: Mapping[str, str] | None = None) -> None:
        self.container, self.volume, self.workdir = container, volume, workdir
        self.user, self.env = user, dict(env or {})
        self.out, self.err = bytearray(), bytearray()
        self.shell = False

    def run(self, argv: list[str]) -> ExecResult:
        self.shell = len(argv) == 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c"
        if self.shell:
            lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=";&>")
            lexer.whitespace_split = True
            tokens = list(lexer)
        else:  # no shell: every word is an argument, `;` and `>` included
            return self._statement(list(argv)), bytes(self.out), bytes(self.err)
        statements: list[list[str]] = [[]]
        for token in tokens:
            if token == ";":
                statements.append([])
            else:
                statements[-1].append(token)
        code = 0
        for words in statements:
            if not words:
                continue
            if words[0] == "exit":
                return (int(words[1]) if len(words) > 1 else code), bytes(self.out), bytes(self.err)
            code = self._statement(words)
        return code, bytes(self.out), bytes(self.err)

    def _statement(self, words: list[str]) -> int:
        command, args = words[0], words[1:]
        if command == "true":
            return 0
        if command == "false":
            return 1
        if command == "echo":
            text, target = _redirect(args) if self.shell else (args, None)
            line = (" ".join(text) + "\n").encode()
            if target is None:
                self.out += line
            elif target == ">&2":
                self.err += line
            else:
                files, path = self._files(target[1])
                files[path] = (files.get(path, b"") if target[0] == ">>" else b"") + line
            return 0
        if command == "mkdir":  # folders are implied by the files' paths
            return 0
        if words == ["id", "-un"]:
            self.out += f"{self.user}\n".encode()
            return 0
        if words == ["pwd"]:
            self.out += f"{self.workdir}\n".encode()
            return 0
        if command == "printenv" and len(args) == 1:
            if args[0] not in self.env:
                return 1
            self.out += f"{self.env[args[0]]}\n".encode()
            return 0
        if command == "stat" and args[:2] == ["-c", "%a %U"] and len(args) == 3:
            files, path = self._files(args[2])
            if path not in files:
                self.err += f"stat: cannot statx '{args[2]}': No such file or directory\n".encode()
                return 1
            self.out += (b"400 dev\n" if files is self.container.secrets else b"644 root\n")
            return 0
        if command == "ulimit" and len(args) == 1 and args[0] in _ULIMIT_FLAGS:
            name, unit = _ULIMIT_FLAGS[args[0]]
            value = self.container.request.ulimits.get(name, -1)
            self.out += (b"unlimited\n" if value == -1 else f"{value // unit}\n".encode())
            return 0
        if command == "df" and args[-1:] == ["/dev/shm"] and "--output=size" in args:
            self.out += f"1B-blocks\n{self.container.request.shm or DOCKER_SHM}\n".encode()
            return 0
        if command == "cat" and args:
            for name in args:
                files, path = self._files(name)
                if path not in files:
                    self.err += f"cat: {name}: No such file or directory\n".encode()
                    return 1
                self.out += files[path]
            return 0
        self.err += f"sh: 1: {command}: not found (the fake shell does not know it)\n".encode()
        return 127

    def _files(self, name: str) -> tuple[dict[str, bytes], str]:
        path = posixpath.normpath(posixpath.join(self.workdir, name))
        if path == HOME_MOUNT or path.startswith(HOME_MOUNT + "/"):
            return self.volume.files, path
        if posixpath.dirname(path) == SECRETS_DIR:  # the tmpfs holds the names put_secrets gave
            return self.container.secrets, posixpath.basename(path)
        return self.container.files, path


def _redirect(args: list[str]) -> tuple[list[str], str | tuple[str, str] | None]:
    """Split `echo`'s words from a trailing `>&2`, `> FILE` or `>> FILE`."""
    if len(args) >= 2 and args[-2] == ">&" and args[-1] == "2":
        return args[:-2], ">&2"
    if len(args) >= 2 and args[-2] in (">", ">>"):
        return args[:-2], (args[-2], args[-1])
    return args, None
