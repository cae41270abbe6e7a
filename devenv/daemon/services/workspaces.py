"""What the API does with workspaces: record what was asked, then let the converger do it.

Requests validate everything they can before touching the store (spec, lock, engine reachable),
so bad input leaves nothing behind; then they write the desired state, bump the generation,
record who asked, and schedule the converger. Each returns the generation a client waits for.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import ExecStream, Handle, Provisioner
from devenv.daemon.services.access_container import END_SESSIONS
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.converge import Converger
from devenv.daemon.services.events import DAEMON_ACTOR, EventLog
from devenv.daemon.services.grant_table import live_marker
from devenv.daemon.services.listing import Listing
from devenv.daemon.services.placement import choose_host
from devenv.daemon.services.projects import Projects, Upload
from devenv.daemon.services.scheduler import Scheduler
from devenv.daemon.store import states
from devenv.daemon.store.tables import Workspace
from devenv.daemon.store.workspaces import Requested, WorkspaceRecords
from devenv.errors import NoCapacity, UsageError, WorkspaceBusy, WorkspaceNotFound
from devenv.spec.models import Spec, valid_name

if TYPE_CHECKING:
    from devenv.daemon.services.hosts import Hosts

WORKSPACE_USER = "dev"


class ExecTracker:
    """Commands started with `devenv exec` that are still running, per workspace.

    A training run started by exec is work even while it waits on I/O: autostop asks here first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()

    @contextmanager
    def running(self, name: str) -> Iterator[None]:
        with self._lock:
            self._running[name] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running[name] -= 1

    def count(self, name: str) -> int:
        with self._lock:
            return self._running[name]


@dataclass(frozen=True)
class Accepted:
    """A changing request was recorded: wait for `generation` to settle (or nothing, if a no-op)."""

    name: str
    generation: int
    scheduled: bool


def workspace_json(ws: Workspace | Row[Any], now: float | None = None, *, price: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    autostop_in = None
    if ws.autostop_seconds and states.container_up(ws.state, ws.error_code) and ws.last_active_at:
        autostop_in = max(0, int(ws.autostop_seconds - (now - ws.last_active_at)))
    return {
        "name": ws.name,
        "owner": ws.owner,
        "backend": ws.backend,
        "state": ws.state,
        "desired": ws.desired,
        "reason": ws.reason,
        "error_code": ws.error_code,
        "image": ws.image_tag,
        "image_hash": ws.image_hash,
        "container_id": ws.container_id,
        "ssh_port": ws.ssh_port,
        "ports": list(ws.ports or []),
        "autostop_seconds": ws.autostop_seconds,
        "autostop_in": autostop_in,
        "generation": ws.generation,
        "gpu": ws.gpu,
        "started_at": ws.started_at if states.container_up(ws.state, ws.error_code) else None,
        "last_active_at": ws.last_active_at,
        "created_at": ws.created_at.timestamp() if ws.created_at else None,
        "setup": ws.setup,
        "pins": ws.pins,
        "price_per_hour": price,
    }


def _gpu(spec: Spec) -> str | None:
    """The spec's GPU request as a person types it, for listings."""
    return str(spec.resources.gpu) if spec.resources.gpu else None


class WorkspaceService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backends: Backends,
        projects: Projects,
        events: EventLog,
        scheduler: Scheduler,
        converger: Converger,
        execs: ExecTracker | None = None,
        hosts: Hosts | None = None,
    ) -> None:
        self.execs = execs or ExecTracker()
        self.hosts = hosts
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.listing = Listing(self.records, workspace_json)
        self.backends = backends
        self.projects = projects
        self.events = events
        self.scheduler = scheduler
        self.converger = converger

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> Workspace:
        ws = self.records.get(name)
        if ws is None:
            raise WorkspaceNotFound(f"no workspace named {name!r}", hint="`devenv ls` lists them")
        return ws

    def list(self, *, limit: int = 100, after: str | None = None) -> tuple[list[Workspace], int]:
        """A page of records by name (keyset), and the total; the API's listing is page_json (what one may see)."""
        return self.records.list(limit=limit, after=after)

    def page_json(
        self, *, owner: str | None, limit: int, after: str | None, visible: tuple[str, Select[Any]] | None
    ) -> bytes:
        """GET /v1/workspaces's answer, encoded here on one worker thread (issue 19): rows, not ORM objects;
        the price looked up once per backend (an isinstance of a Protocol costs 50 us); no pass of FastAPI's
        encoder over a thousand small values. `visible`: for a member, (person, the names granted to them)."""
        return self.listing.page(owner=owner, limit=limit, after=after, visible=visible, priced=self._pricers())

    def _pricers(self) -> dict[str, Callable[[str], float | None]]:
        """backend name -> its price(name) for the backends that provision machines (Provisioner)."""
        found: dict[str, Callable[[str], float | None]] = {}
        for name, entry in self.backends.entries.items():
            if isinstance(backend := entry.backend, Provisioner):
                found[name] = backend.price
        return found

    def price(self, ws: Workspace) -> float | None:
        """USD per hour of the machine devenv provisioned for it (a cloud instance), as last seen; else None."""
        entry = self.backends.entries.get(ws.backend)
        backend = entry.backend if entry is not None else None
        return backend.price(ws.name) if isinstance(backend, Provisioner) else None

    # -- changing ------------------------------------------------------------------------------

    def up(
        self,
        actor: str,
        upload: Upload,
        name: str | None = None,
        pins: dict[str, Any] | None = None,
        on: str | None = None,
        code: dict[str, Any] | None = None,
    ) -> Accepted:
        """Record the workspace the upload describes; `pins` (from a snapshot) fix its commit; `on` (a
        backend name, or "auto") overrides the spec's `backend:`; `code` names the uploaded project folder
        (placed on the first start; what was placed stays on the record under code.placed)."""
        project = self.projects.open(upload)  # SpecInvalid with the person's file and lines
        if upload.has_lock:
            self.projects.plan(upload)  # LockMismatch now, not in the middle of a build
        spec = project.spec
        name = name or spec.name
        if not valid_name(name):
            raise UsageError(f"workspace name {name!r}: use lowercase letters, digits and dashes (at most 63)")
        where = self._where(name, spec, on)
        backend = self.backends.get(where)
        self.projects.check_host_folders(upload, backend)  # data.remote, resolved through symlinks when local
        backend.ping()  # an engine that does not answer: a clear error, and no record made
        digest = self.projects.save(upload)
        fields = {
            "project_hash": digest,
            "autostop_seconds": spec.autostop,
            "ports": list(spec.ports),
            "gpu": _gpu(spec),
            "pins": pins,
        }
        for _attempt in range(3):
            try:
                generation, created, noop = self.records.record_up(actor, name, where, fields)
            except IntegrityError:  # a concurrent `up` of the same name made the record first
                continue
            break
        else:
            raise WorkspaceBusy(f"workspace {name} is being changed by another request; try again")
        if code is not None:
            self.records.merge_code(name, code)
        self.events.record(name, "api", f"up ({'new' if created else 'no change' if noop else 'update'})", actor=actor)
        if not noop or self.scheduler.busy(name):
            self.scheduler.schedule(name)
            return Accepted(name, generation, True)
        return Accepted(name, generation, False)

    def _where(self, name: str, spec: Spec, on: str | None) -> str:
        """The backend to run on: `--on`, else the spec's explicit `backend:`, else where the workspace is
        already, else the spec's default; "auto" places it (an existing workspace stays where it is)."""
        existing = self.records.get(name)
        asked = on or (spec.backend if "backend" in spec.model_fields_set else None)
        if existing is not None and asked in (None, "auto"):
            return existing.backend
        asked = asked or spec.backend
        if asked != "auto":
            return asked
        if self.hosts is None:
            raise UsageError("`--on auto` needs hosts to choose from", hint="add one with `devenv host add`")
        usable = self.backends.usable()
        asked_for = f"GPUs {spec.resources.gpu}" if spec.resources.gpu else "no GPU"
        try:
            chosen = choose_host(
                spec.resources.gpu,
                self.hosts.facts([backend.name for backend in usable if not isinstance(backend, Provisioner)]),
            )
        except NoCapacity as none_free:
            cloud = next((backend.name for backend in usable if isinstance(backend, Provisioner)), None)
            if cloud is None or spec.resources.gpu is None:
                raise
            self.events.record(name, "api", f"placed on {cloud} (--on auto, {asked_for}): {none_free.message}")
            return cloud
        self.events.record(name, "api", f"placed on {chosen} (--on auto, {asked_for})")
        return chosen

    def _change(
        self,
        actor: str,
        name: str,
        verb: str,
        *,
        desired: states.Desire,
        state: states.State,
        unless: set[str],
        **fields: Any,
    ) -> Accepted:
        """Set desired state unless the workspace is already in one of `unless` states (a no-op)."""
        change = self.records.request(name, desired=desired, state=state, unless=unless, **fields)
        if change is None:
            raise WorkspaceNotFound(f"no workspace named {name!r}", hint="`devenv ls` lists them")
        return self._accept(actor, name, verb, state, change)

    def _accept(
        self, actor: str, name: str, verb: str, state: str, change: Requested, why: tuple[str, str] | None = None
    ) -> Accepted:
        """Tell the world a request was recorded (`why`: one more event, (kind, message)); converge it."""
        self.events.record(name, "api", verb, actor=actor)
        if change.changed and change.previous != state:
            self.events.record(name, "state", f"{change.previous} -> {state}", data={"state": state})
        if why is not None:
            self.events.record(name, *why)
        scheduled = change.changed
        if scheduled or self.scheduler.busy(name):
            self.scheduler.schedule(name)
            scheduled = True
        return Accepted(name, change.generation, scheduled)

    def stop(self, actor: str, name: str) -> Accepted:
        return self._change(
            actor,
            name,
            "stop",
            desired=states.DESIRE_STOPPED,
            state=states.STOPPING,
            unless={states.STOPPED},
            reason=f"stopped by {actor}",
        )

    def stop_idle(self, name: str, reason: str, message: str) -> Accepted | None:
        """Autostop's stop: the request a person's `devenv stop` makes (generation, events, converge), by the
        daemon, `reason` on the record and an autostop event saying `message`; None (nothing asked) when the
        workspace no longer runs or is no longer meant to (a person's request came first)."""
        change = self.records.request(
            name,
            desired=states.DESIRE_STOPPED,
            state=states.STOPPING,
            unless={states.STOPPED},
            only_up=True,
            reason=reason,
        )
        if change is None:
            return None
        return self._accept(DAEMON_ACTOR, name, "stop", states.STOPPING, change, why=("autostop", message))

    def start(self, actor: str, name: str) -> Accepted:
        return self._change(
            actor,
            name,
            "start",
            desired=states.DESIRE_RUNNING,
            state=states.PENDING,
            unless={states.RUNNING},
            reason=None,
        )

    def remove(self, actor: str, name: str, *, keep_volume: bool) -> Accepted:
        verb = "rm --keep-volume" if keep_volume else "rm"
        return self._change(
            actor,
            name,
            verb,
            desired=states.DESIRE_DELETED,
            state=states.DELETING,
            unless=set(),
            keep_volume=int(keep_volume),
        )

    def rebuild(self, actor: str, name: str, upload: Upload | None) -> Accepted:
        ws = self.get(name)
        fields: dict[str, Any] = {"recreate": 1, "reason": None}
        if upload is not None:
            project = self.projects.open(upload)
            if upload.has_lock:
                self.projects.plan(upload)
            if "backend" in project.spec.model_fields_set and project.spec.backend not in (ws.backend, "auto"):
                raise UsageError(f"workspace {name} runs on backend {ws.backend}, the spec says {project.spec.backend}")
            fields.update(
                project_hash=self.projects.save(upload),
                autostop_seconds=project.spec.autostop,
                ports=list(project.spec.ports),
                gpu=_gpu(project.spec),
            )
        elif ws.project_hash is None:
            raise UsageError(
                f"workspace {name} was adopted without its project; run `devenv rebuild` in its project folder"
            )
        return self._change(
            actor, name, "rebuild", desired=states.DESIRE_RUNNING, state=states.PENDING, unless=set(), **fields
        )

    # -- in the workspace ----------------------------------------------------------------------

    def _running(self, name: str) -> Workspace:
        ws = self.get(name)
        if not states.container_up(ws.state, ws.error_code):  # a failed hook's container: to get in and fix it
            raise WorkspaceBusy(f"workspace {name} is {ws.state}, not running", hint=f"`devenv start {name}` first")
        return ws

    def exec(
        self,
        actor: str,
        name: str,
        argv: builtins.list[str],
        *,
        user: str = "dev",
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecStream:
        """Run a command in the workspace. Who may, and as whom, the route decides; a grantee's command
        (as dev) carries their marker group and sandbox, so it ends with their access, detached or not."""
        if not argv:
            raise UsageError("exec needs a command: `devenv exec WS -- CMD ...`")
        ws = self._running(name)
        backend = self.backends.get(ws.backend)
        self.events.record(name, "api", f"exec {argv[0]}", actor=actor)
        if actor != ws.owner and user == WORKSPACE_USER:
            with self.sessions() as session:
                marker = live_marker(session, name, actor, "ssh")
            if marker is not None:  # as root only to become dev with the marker, before anything of theirs runs
                pairs = [f"{key}={value}" for key, value in (env or {}).items() if "=" not in key]
                argv, user, env = [*END_SESSIONS, "--as", str(marker.gid), *pairs, "--", *argv], "root", {}
        kwargs: dict[str, Any] = {"user": user, "env": env or {}}
        if workdir:
            kwargs["workdir"] = workdir
        inner = backend.exec(Handle.for_workspace(name), list(argv), **kwargs)

        def chunks() -> Iterator[tuple[str, bytes]]:
            with self.execs.running(name):
                yield from inner

        return ExecStream(chunks(), lambda: 1 if inner.exit_code is None else inner.exit_code)

    def logs(self, name: str, *, follow: bool, tail: int | None) -> Iterator[bytes]:
        ws = self.get(name)
        return self.backends.get(ws.backend).logs(Handle.for_workspace(name), follow=follow, tail=tail)

    def project_summary(self, name: str) -> dict[str, Any]:
        """The spec as sent and the hashes that pin it, for a person reading what a workspace is."""
        ws = self.get(name)
        if ws.project_hash is None:
            return {"spec_path": None, "spec": None, "lock_hash": None, "base_digest": None}
        upload = self.projects.load(ws.project_hash)
        lock = self.projects.plan(upload).lock if upload.has_lock else None
        return {
            "spec_path": upload.spec_path,
            "spec": upload.files.get(PurePosixPath(upload.spec_path).name),
            "lock_hash": lock.content_hash() if lock else None,
            "base_digest": lock.base.digest if lock else None,
        }

    def lock_text(self, name: str) -> str | None:
        ws = self.get(name)
        if ws.project_hash is None:
            return None
        return self.projects.load(ws.project_hash).files.get("devenv.lock")
