"""What the daemon answers on the wire: one definition for the routes (`response_model=`) and the client.

TypedDicts, so the client, the CLI and the TUI read plain dicts (json.loads) with their keys checked by
mypy, and import neither pydantic nor FastAPI (`devenv ls` stays light); the daemon hands the same
classes to FastAPI, which validates each answer against them and leaves out any key not declared here.
So a key the daemon sends is added here first: the route, the client and tests/unit/test_wire_models.py
then all see it. typing_extensions' TypedDict: pydantic needs it on Python 3.11; no `from __future__ import
annotations`: NotRequired must be seen as it is written (`__required_keys__`).
"""

from typing import Any, NotRequired

from typing_extensions import TypedDict

Number = int | float  # a figure sent as the daemon has it: an int stays an int on the way out (not 1.0)
Json = dict[str, Any]  # a record kept as JSON by the store (setup results, pins, a repo's facts)


# -- the daemon ----------------------------------------------------------------------------------


class Health(TypedDict):
    ok: bool
    version: str
    build: str  # the version and a digest of the installed files (devenv.installed.build_id)
    autostarted: bool  # started by a `devenv` command on its own: one of a newer build may restart it
    pid: int
    web_url: str | None


class Whoami(TypedDict):
    actor: str
    admin: bool


class Done(TypedDict):
    ok: bool


class Removed(TypedDict):
    removed: str


class BackendView(TypedDict):
    """A place workspaces can run (`backend:`, `--on`), and why it cannot be used."""

    name: str
    type: str
    url: str | None
    usable: bool
    error: str | None


class BackendList(TypedDict):
    items: list[BackendView]


# -- workspaces ----------------------------------------------------------------------------------


class WorkspaceView(TypedDict):
    """A workspace as listed (GET /v1/workspaces), shown (GET /v1/workspaces/NAME) and as a stream's last line."""

    name: str
    owner: str
    backend: str
    state: str
    desired: str
    reason: str | None
    error_code: str | None
    image: str | None
    image_hash: str | None
    container_id: str | None
    ssh_port: int | None
    ports: list[Any]
    autostop_seconds: int | None
    autostop_in: int | None
    generation: int
    gpu: str | None
    started_at: float | None
    last_active_at: float | None
    created_at: float | None
    setup: Json | None
    pins: Json | None
    price_per_hour: Number | None


class WorkspacePage(TypedDict):
    items: list[WorkspaceView]
    total: int
    next: str | None  # the name to ask `after=` for the next page; None on the last


class ProjectSummary(TypedDict):
    spec_path: str | None
    spec: str | None
    lock_hash: str | None
    base_digest: str | None


class LockText(TypedDict):
    lock: str | None


class WorkspaceStatus(TypedDict):
    """GET /v1/workspaces/NAME/status: pins, secrets, the clone and the data (`devenv status`)."""

    name: str
    state: str
    reason: str | None
    image: str | None
    image_hash: str | None
    image_id: str | None  # what the container runs, as its engine names it (None: no container)
    verified_at: str | None  # when `devenv verify` last proved image_id is what the lock builds
    lock_hash: str | None
    base_digest: str | None
    pins: Json
    secrets: Json  # {"delivered": [...], "missing": [...], ...}
    secrets_needed: list[str]
    repo: Json | None
    data: Json | None
    tracking: Json | None


class EventView(TypedDict):
    """A stored event (GET /v1/events, the follow stream's lines); a live one carries `data`, and no id."""

    id: int | None
    at: float
    workspace: str | None
    kind: str
    actor: str
    message: str
    data: NotRequired[Json]


class EventList(TypedDict):
    items: list[EventView]


class ChangeFrame(TypedDict, total=False):
    """A line of a changing route's stream (up, stop, start, rebuild, rm, data pull): events while the work
    goes on, then one of workspace, deleted, setup (a data pull) or error."""

    event: EventView
    workspace: WorkspaceView
    deleted: str
    setup: Json
    error: Json  # {"code", "message", "hint", ...}: errors.error_from_payload rebuilds it


# -- projects: lock and build on the daemon's engines ------------------------------------------


class ProgressView(TypedDict):
    """One step of long work (devenv.progress.ProgressEvent), as the CLI's progress display shows it."""

    kind: str  # phase | step | log | download | done
    message: str
    current: int | None
    total: int | None


class LockedView(TypedDict):
    """devenv.lock as the daemon resolved it: its text, for the client to write beside the spec."""

    lock: str
    changed: bool
    python: int
    apt: int
    tooling: int


class BuiltView(TypedDict):
    tag: str
    image_id: str
    cached: bool
    backend: str


class VerifiedView(TypedDict):
    tag: str
    image_id: str
    build_seconds: float


class PushedView(TypedDict):
    reference: str  # REGISTRY/NAME@sha256:...
    digest: str
    layers_sent: int
    layers_present: int  # the registry had them already
    bytes_sent: int


class PromotedView(TypedDict):
    """The production image `devenv promote` made on a backend's engine."""

    tag: str
    image_id: str
    commit: str
    dirty: bool
    created: str  # the commit's time, RFC 3339
    labels: dict[str, str]
    sbom: str  # base64: the CycloneDX SBOM, also at /usr/share/devenv/sbom.cdx.json in the image
    gate: str  # "passed", or why there was none
    added_bytes: int
    pushed: PushedView | None  # once pushed and pulled back by digest
    notes: list[str]


class BaseView(TypedDict):
    """A base recipe and its image on a backend's engine (`devenv images ls`)."""

    recipe: str
    python: str
    image: str
    digest: str | None  # None: not made on that engine
    source: str | None  # upstream | bootstrap


class BaseList(TypedDict):
    items: list[BaseView]


class WorkFrame(TypedDict, total=False):
    """A line of POST /v1/projects/lock, /build, /verify, /promote, /run or /ci: progress (and a command's
    output) while the work goes on, then locked, built, verified, promoted, exit or error."""

    progress: ProgressView
    locked: LockedView
    built: BuiltView
    verified: VerifiedView
    promoted: PromotedView
    base: BaseView
    stdout: str  # base64: a command's output (POST /v1/projects/run), as it comes
    stderr: str
    changed: str  # base64: part of a tar of the files `devenv ci run`'s tests created or changed
    exit: int  # the command's exit code: its last line
    error: Json


# -- access --------------------------------------------------------------------------------------


class GrantView(TypedDict):
    person: str
    ssh: bool
    jupyter: bool
    expires_at: float | None
    granted_by: str
    granted_at: float | None
    ended_at: float | None
    ended_by: str | None
    share_secrets: bool


class AccessList(TypedDict):
    workspace: str
    owner: str
    grants: list[GrantView]


class SshCertificate(TypedDict):
    certificate: str
    principal: str
    serial: int
    valid_before: float
    user: str
    host: str
    port: int | None
    host_name: str
    host_ca: str


class JupyterLink(TypedDict):
    url: str  # opens Jupyter once (a one-time ticket), then redirects to clean_url
    clean_url: str
    expires_in: Number


# -- snapshots -----------------------------------------------------------------------------------


class SnapshotView(TypedDict):
    """A snapshot: who and when, then its record as kept (older records may lack a key, hence NotRequired)."""

    id: str
    workspace: str
    owner: str
    made_by: str
    created_at: float | None
    note: NotRequired[str | None]
    image: NotRequired[str | None]
    image_hash: NotRequired[str | None]
    lock_hash: NotRequired[str | None]
    base_digest: NotRequired[str | None]
    project_hash: NotRequired[str | None]
    backend: NotRequired[str | None]
    repo: NotRequired[Json | None]
    data: NotRequired[Json | None]
    wandb_runs: NotRequired[list[Any]]


class SnapshotList(TypedDict):
    items: list[SnapshotView]


# -- secrets and dotfiles ------------------------------------------------------------------------


class SecretView(TypedDict):
    """A secret as listed: never its value."""

    name: str
    scope: str
    person: str | None
    updated_at: float
    updated_by: str


class SecretList(TypedDict):
    items: list[SecretView]


class DotfilesView(TypedDict):
    url: str | None
    install: str | None
    updated_at: float | None
    note: str | None


class DotfilesRemoved(TypedDict):
    removed: bool


# -- hosts and offers ----------------------------------------------------------------------------


class GpuView(TypedDict):
    index: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    utilization_percent: int
    workspace: str | None


class HostFactsView(TypedDict):
    engine_version: str
    os: str
    arch: str
    cpus: int
    memory_bytes: int
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    gpus: list[GpuView]
    gpu_note: str
    workspaces: int
    free_gpus: int


class InstanceView(TypedDict):
    id: str
    type: str
    zone: str | None
    state: str
    price_per_hour: Number | None


class HostView(TypedDict):
    """A backend with its facts (GET /v1/hosts); a provisioner's machine adds `workspace` and `instance`."""

    name: str
    url: str | None
    kind: str | None
    added_by: str | None
    reachable: bool
    error: str | None
    workspaces: int
    facts: HostFactsView | None
    public_key: str | None
    workspace: NotRequired[str | None]
    instance: NotRequired[InstanceView]


class HostList(TypedDict):
    items: list[HostView]


class HostAdded(TypedDict):
    name: str
    url: str
    facts: HostFactsView


class OfferView(TypedDict):
    instance_type: str
    gpu_type: str
    gpu_count: int
    gpu_memory_gib: Number
    vcpus: int
    memory_gib: Number
    region: str
    on_demand_price: Number
    spot_price: Number | None
    zones: list[str]
    price: Number | None
    spot: bool


class OfferList(TypedDict):
    items: list[OfferView]
    total: int
    updated: str
    source: str


class OffersRefreshed(TypedDict):
    offers: int
    updated: str
    source: str
