"""The Backend protocol: what the daemon asks of any place that runs workspaces, in plain data.

Rules every backend keeps (the daemon relies on them):

- Calls return fast and never wait for a workspace to become "ready"; the daemon polls.
- `list_workspaces` and `list_volumes` are ONE call to the engine each, whatever the number of
  workspaces: the reconciler calls them once per pass.
- Everything a backend makes carries the labels below, so a restarted daemon can find its own.
- Names are deterministic (`container_name`, `volume_name`), so creating twice finds the first
  one instead of making a second: `create` and `ensure_volume` are idempotent.
- `remove` is idempotent: removing what is already gone is not an error.
- A `Handle` is plain JSON the daemon stores, so it survives a daemon restart.
- A backend never touches the store, and nothing assumes the engine is on this machine (no bind
  mounts of local paths): ssh:// engines and cloud VMs use the same code.
- Foreign exceptions are translated where they enter: EngineUnreachable when the engine does not
  answer (naming its URL), PortInUse for a taken port, BackendError for the rest.

Optional capabilities are separate protocols checked with isinstance (ImageBuilder, GpuCapable),
so the daemon and the TUI can tell what a backend cannot do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pydantic import BaseModel

    from devenv.build.builder import BuildResult
    from devenv.build.project import Project
    from devenv.build.verify import Verified
    from devenv.lock.models import BaseImage
    from devenv.progress import Progress
    from devenv.promote.package import CommitFacts, Promotion
    from devenv.spec.units import GpuRequest

LABEL_WORKSPACE = "devenv.workspace"
LABEL_OWNER = "devenv.owner"
LABEL_IMAGE_HASH = "devenv.image-hash"
LABEL_ROLE = "devenv.role"  # "workspace" (container) or "home" (volume)
LABEL_DAEMON = "devenv.daemon"  # the id of the store whose daemon made it: daemons sharing an engine keep apart
LABEL_BACKEND = "devenv.backend"  # the daemon's name for the engine: two names for one engine keep apart
LABEL_GPU_IDS = "devenv.gpu-ids"  # "0,2": the GPUs a workspace was given, so placement sees them taken

GIB = 1024**3
HOME_MOUNT = "/home/dev"
SSH_PORT = 22
JUPYTER_PORT = 8888  # the owner's JupyterLab inside a workspace (DEVENV_JUPYTER_PORT moves it: slurm)
SECRETS_DIR = "/run/devenv/secrets"  # a tmpfs in every workspace: secrets never touch a disk
ENGINE_HOST_NAME = "host.docker.internal"  # how a workspace names its engine's host (a DVC or git server there)


@dataclass(frozen=True)
class BackendFactory:
    """What an entry point of the group `devenv.backends` names: the options a daemon.yaml entry of its type takes
    (a pydantic model refusing keys it does not know, so a typo is caught at start-up, named) and how to make the
    backend from them. `create` imports the backend's SDK only when called: loading every entry point stays cheap."""

    config: type[BaseModel]
    create: Callable[[str, Any], Backend]


def container_name(workspace: str) -> str:
    return f"devenv-{workspace}"


def volume_name(workspace: str) -> str:
    return f"devenv-{workspace}-home"


@dataclass(frozen=True)
class LaunchRequest:
    """Everything needed to create a workspace's container; built by the daemon from spec and record."""

    workspace: str
    owner: str
    image: str
    image_hash: str
    cpu: float | None = None
    memory: int | None = None  # bytes
    gpu_count: int | None = None  # None: no GPU; -1: all GPUs
    gpu_kind: str | None = None  # "A100": recorded in a label; Docker cannot pick GPUs by model
    gpu_ids: tuple[str, ...] = ()  # the GPUs placement chose (indexes as nvidia-smi lists them); () lets Docker pick
    ports: tuple[int, ...] = ()  # published on the same port of the engine's 127.0.0.1
    env: Mapping[str, str] = field(default_factory=dict)
    ssh: bool = True
    jupyter: bool = True
    files: Mapping[str, bytes] = field(default_factory=dict)  # absolute path -> bytes, in place before start
    binds: Mapping[str, str] = field(default_factory=dict)  # a path ON THE ENGINE'S HOST -> where it appears
    daemon: str | None = None  # LABEL_DAEMON's value
    shm: int | None = None  # bytes of /dev/shm (None: the engine's 64 MiB); the daemon fills in its default
    ulimits: Mapping[str, int] = field(default_factory=dict)  # memlock|stack|nofile|nproc|core -> soft = hard; -1: none
    time: int | None = None  # seconds one run may last, on a backend with time limits (slurm); None: its default


@dataclass(frozen=True)
class Handle:
    """What the daemon stores to find a workspace's parts again (plain JSON)."""

    container: str
    volume: str

    def to_json(self) -> dict[str, str]:
        return {"container": self.container, "volume": self.volume}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> Handle:
        return cls(container=data["container"], volume=data["volume"])

    @property
    def workspace(self) -> str:
        """The workspace the container belongs to (the inverse of `container_name`)."""
        return self.container.removeprefix(container_name(""))

    @classmethod
    def for_workspace(cls, workspace: str) -> Handle:
        return cls(container=container_name(workspace), volume=volume_name(workspace))


ContainerStatus = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]


@dataclass(frozen=True)
class Observed:
    """A workspace container as the engine reports it in one list call."""

    workspace: str
    container_id: str
    container_name: str
    status: ContainerStatus
    owner: str | None = None
    image_hash: str | None = None
    ports: Mapping[int, int] = field(default_factory=dict)  # container port -> where the daemon's machine reaches
    # it: the engine's published 127.0.0.1 port for a local engine, a tunnel's local port for a remote one
    detail: str = ""  # the engine's own words, like "Exited (137) 5 seconds ago"
    daemon: str | None = None  # LABEL_DAEMON: which daemon made it (None: made before the label existed)
    gpu_ids: tuple[str, ...] = ()  # LABEL_GPU_IDS
    image_id: str | None = None  # the engine's ID of the image the container runs (`devenv status`: verified?)

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")


@dataclass(frozen=True)
class ObservedVolume:
    name: str
    workspace: str | None
    owner: str | None = None
    image_hash: str | None = None


class ExecStream:
    """Output of a command run in a workspace: iterate (stream, bytes) chunks; then `exit_code`.

    stream is "stdout" or "stderr". `exit_code` is set once the iteration ends.
    """

    def __init__(
        self,
        chunks: Iterator[tuple[str, bytes]],
        exit_code: Callable[[], int],
        stop: Callable[[], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._exit_code = exit_code
        self.exit_code: int | None = None
        self.stop = stop  # ends the command now, from any thread (its reader went away); None: it cannot

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        yield from self._chunks
        self.exit_code = self._exit_code()


@runtime_checkable
class Backend(Protocol):
    """A place that runs workspaces. See the module docstring for the rules."""

    name: str  # the daemon's name for it ("local")
    url: str  # where it is, for error messages ("unix:///var/run/docker.sock")

    def ping(self) -> None:
        """Raise EngineUnreachable (naming `url`) unless the engine answers."""

    def list_workspaces(self) -> list[Observed]:
        """Every workspace container on the engine, running or not, in one call."""

    def list_volumes(self) -> list[ObservedVolume]:
        """Every home volume on the engine, in one call."""

    def ensure_volume(self, workspace: str, owner: str, image_hash: str | None = None) -> str:
        """Create the workspace's home volume unless it exists; return its name.

        `image_hash` labels the volume with the image it was made for (labels never change after).
        """

    def create(self, request: LaunchRequest) -> Handle:
        """Create (not start) the container; if one of that name exists, return its handle."""

    def start(self, handle: Handle) -> Observed:
        """Start the container (no-op when running); PortInUse when a published port is taken."""

    def stop(self, handle: Handle, *, timeout: int = 10) -> None:
        """Stop the container (SIGTERM, then SIGKILL after `timeout` s); no-op when stopped or gone."""

    def remove(self, handle: Handle, *, keep_volume: bool) -> None:
        """Remove the container, and the home volume unless `keep_volume`; idempotent."""

    def put_files(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        """Place files (absolute path -> bytes, mode 0644, root's) in the container, parents made.

        In a running container each file is replaced atomically (written beside it, then renamed),
        so a reader such as sshd never sees half a file.
        """

    def put_secrets(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        """Make SECRETS_DIR (a tmpfs) hold exactly `files` (name -> bytes, mode 0400, dev's), in the
        running container. The bytes travel on the exec's stdin: never an archive written to the
        container's disk, a command line, an environment variable or a log."""

    def remove_container(self, handle: Handle) -> None:
        """Remove the container only (rebuild keeps the home); idempotent."""

    def exec(
        self,
        handle: Handle,
        argv: list[str],
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
        workdir: str = HOME_MOUNT,
    ) -> ExecStream:
        """Run a command in the running container and stream its output."""

    def logs(self, handle: Handle, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        """The container's output (sshd, JupyterLab, the entrypoint), optionally followed."""

    def internal_address(self, handle: Handle, port: int) -> tuple[str, int]:
        """Where the daemon reaches `port` of the running container, which is not published (JupyterLab).

        Unsupported where the daemon cannot route to the container's own network (a remote engine).
        """


@runtime_checkable
class ImageBuilder(Protocol):
    """A backend whose engine builds images (docker does; a cluster engine may not)."""

    def build(self, project: Project, progress: Progress | None = None, *, no_cache: bool = False) -> BuildResult:
        """Build the project's image on this engine (a tag lookup when it exists; every step with `no_cache`)."""

    def lock(self, project: Project, progress: Progress | None = None, *, upgrade: bool = False) -> bool:
        """Resolve the project's devenv.lock using this engine's base image (against the newest index with
        `upgrade`); whether the file changed."""

    def verify(self, project: Project, progress: Progress | None = None) -> Verified:
        """Rebuild the project's image with no cache and prove it is the image in use (VerifyMismatch names the
        first layer and the files that differ)."""

    def base(
        self, recipe: str, *, make: bool, force: bool = False, progress: Progress | None = None
    ) -> BaseImage | None:
        """The recipe's base image on this engine; with `make`, made first when missing (or again, `force`):
        from the pinned upstream, else from Debian packages. None when it is not there and not to be made."""

    def run(
        self,
        image: str,
        argv: list[str],
        *,
        network: bool = True,
        env: Mapping[str, str] | None = None,
        files: RunFiles | None = None,
    ) -> ExecStream:
        """Run `argv` once in a throwaway container of `image` on this engine (`devenv run`, `devenv ci run`),
        as `dev`, confined as a workspace is; the container is gone when the command ends or its reader stops.
        With `files`, it runs in their folder, and the folder's tar follows the output as "files" chunks."""


@runtime_checkable
class Promoter(Protocol):
    """A backend that packages a project for production on its engine (`devenv promote`)."""

    def promote(
        self,
        project: Project,
        facts: CommitFacts,
        code: Path,
        *,
        tag: str | None = None,
        push: bool = False,
        auth: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Promotion:
        """The production image of `facts.commit` (`code`: its git archive's tar): the dev image's layers
        without the dev tooling, /app at the commit, gated by `ci.test`; pushed to `tag`'s registry with
        the person's `auth` (never the engine owner's) when `push`."""


@dataclass(frozen=True)
class RunFiles:
    """A one-shot command's working folder: `tar`'s members placed into `folder` (owned by dev) before it
    starts; the folder's tar (members under its own name) given back once it ends."""

    tar: Path
    folder: str


@dataclass(frozen=True)
class Gpu:
    """One GPU of a host, as nvidia-smi reports it, and which workspace devenv gave it to."""

    index: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    utilization_percent: int
    workspace: str | None = None

    @property
    def busy(self) -> bool:
        """Held by a workspace, or in use by something else on the host (memory or compute)."""
        return self.workspace is not None or self.memory_used_mib > 512 or self.utilization_percent >= 10


@dataclass(frozen=True)
class HostFacts:
    """What `devenv host ls` shows and `--on auto` weighs: one probe of a host."""

    engine_version: str
    os: str
    arch: str
    cpus: int
    memory_bytes: int
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    gpus: tuple[Gpu, ...] = ()
    gpu_note: str = ""  # why no GPU is listed ("nvidia-smi not found"), or ""
    workspaces: int = 0  # devenv containers running there

    @property
    def free_gpus(self) -> list[Gpu]:
        return [gpu for gpu in self.gpus if not gpu.busy]


@runtime_checkable
class HostInspectable(Protocol):
    """A backend that can describe its machine (engine version, GPUs and their use, free disk)."""

    def facts(self) -> HostFacts:
        """Probe the machine now; EngineUnreachable when it does not answer."""


@runtime_checkable
class HostMemory(Protocol):
    """A backend that can say how much memory its engine's machine has (for the default /dev/shm size)."""

    def host_memory(self) -> int | None:
        """Bytes of memory of the engine's machine, asked once and remembered; None when unknown."""


def default_shm(memory_limit: int | None, backend: object) -> int:
    """/dev/shm's size when the spec names none: half the memory limit (with none, half the engine machine's
    memory), at least 1 GiB, never more than the machine has. Docker's own 64 MiB kills PyTorch DataLoader
    workers with SIGBUS ("bus error")."""
    host = backend.host_memory() if isinstance(backend, HostMemory) else None
    size = max((memory_limit or host or 2 * GIB) // 2, GIB)
    return min(size, host) if host else size


@runtime_checkable
class Provisioner(Protocol):
    """A backend that makes a machine for each workspace before it can build or run there (a cloud GPU
    instance), parks it when the workspace stops and removes it with the workspace.

    After `provision`, `host(workspace)` is the machine's own Backend (Docker over SSH): the daemon builds,
    creates and starts there. The per-handle calls of the Backend protocol reach it too, by workspace.
    """

    def provision(self, workspace: str, gpu: GpuRequest | None, progress: Progress | None = None) -> None:
        """Find, start or launch the workspace's machine and wait until its engine answers (idempotent)."""

    def host(self, workspace: str) -> Backend:
        """The provisioned machine's backend; BackendError when it is not running."""

    def park(self, workspace: str) -> None:
        """The workspace stopped: stop its machine (or terminate it, by the backend's policy)."""

    def release(self, workspace: str, *, keep_volume: bool) -> None:
        """The workspace is removed: terminate its machine and delete its disks unless `keep_volume`."""

    def price(self, workspace: str) -> float | None:
        """USD per hour of the workspace's machine, as last seen (no call to the provider)."""


@runtime_checkable
class GpuCapable(Protocol):
    """A backend that can attach GPUs (device requests); `gpu_count` in a LaunchRequest needs it."""

    supports_gpu: bool
