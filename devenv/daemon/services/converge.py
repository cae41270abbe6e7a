"""Moving one workspace from where it is to what was asked: build, create, start, stop, delete.

Every step first writes the state it enters, so a daemon killed at any moment finds, on restart,
a record saying what was under way; running the converger again finishes it (creates are
idempotent by name, builds are tag lookups once done). A workspace that never ran and fails on
its way up is rolled back: container, new volume and record removed, so nothing half-made stays.

Each run converges one generation of the record: its writes are compare-and-set on it, and once a
newer request has bumped it (a `stop` during an `up`) the run stops where it is (Superseded), quietly;
the newer request scheduled a run of its own when it was recorded (scheduler.Scheduler), which goes
on from the record as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import (
    SSH_PORT,
    Backend,
    Handle,
    HostInspectable,
    ImageBuilder,
    LaunchRequest,
    Observed,
    Provisioner,
    default_shm,
    volume_name,
)
from devenv.daemon.services import lifecycle
from devenv.daemon.services.access import Access
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.placement import choose_gpus
from devenv.daemon.services.projects import Projects, Upload
from devenv.daemon.services.setup import WorkspaceSetup
from devenv.daemon.store import states
from devenv.daemon.store.tables import Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import BackendError, DevenvError, EngineUnreachable, MountSourceMissing, Unsupported
from devenv.progress import ProgressEvent
from devenv.spec.models import Spec
from devenv.spec.units import GpuRequest

log = logging.getLogger("devenvd.converge")


START_WITHIN = 30 * 60  # seconds a submitted job may wait for its container to run (a batch queue)


def _data_binds(spec: Spec | None, projects: Projects, backend: Backend) -> dict[str, str]:
    """A DVC remote that is a folder on the engine's host appears at the same path in the workspace: only a
    folder the admin allows (daemon.yaml's allowed_host_folders), checked again here, symlinks resolved when
    the engine is on this machine; SpecInvalid otherwise, before any container is made."""
    return projects.data_binds(spec, backend)


class Superseded(Exception):
    """A newer request moved the record on (or it is gone): the run converging the older generation stops."""


class Converger:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backends: Backends,
        projects: Projects,
        events: EventLog,
        access: Access,
        setup: WorkspaceSetup | None = None,
        daemon_id: str | None = None,
    ) -> None:
        self.access = access
        self.daemon_id = daemon_id
        self.setup = setup
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.backends = backends
        self.projects = projects
        self.events = events
        self._locks: dict[str, threading.Lock] = {}  # a build per image tag, GPU choices per host
        self._locks_guard = threading.Lock()

    # -- store helpers -------------------------------------------------------------------------

    def load(self, name: str) -> Workspace | None:
        return self.records.get(name)

    def set_state(self, ws: Workspace, state: str, reason: str | None = None, **fields: Any) -> None:
        """Write the state (and fields) first, then tell the world: a crash after this line resumes here.

        Only while the record is at ws.generation (compare-and-set): Superseded when a newer request came."""
        if not self.records.set_state(ws.name, states.State(state), generation=ws.generation, reason=reason, **fields):
            raise Superseded(ws.name)
        values = {"state": state, "reason": reason, **fields}
        previous = ws.state
        for key, value in values.items():
            setattr(ws, key, value)
        if previous != state:
            message = f"{previous} -> {state}" + (f": {reason}" if reason else "")
            self.events.record(ws.name, "state", message, data={"state": state})

    def _settle(self, name: str, generation: int, error: DevenvError | None) -> None:
        current = self.load(name)
        data: dict[str, Any] = {"generation": generation, "state": current.state if current else "deleted"}
        if error is not None:
            from devenv.errors import error_payload

            data["error"] = error_payload(error)
        self.events.live(name, "settled", data["state"], data=data)

    # -- the converger -------------------------------------------------------------------------

    def converge(self, name: str) -> None:
        ws = self.load(name)
        if ws is None:
            return
        error: DevenvError | None = None
        try:
            try:
                backend = self.backends.get(ws.backend)
                if ws.desired == states.DESIRE_DELETED:
                    self._delete(ws, backend)
                elif ws.desired == states.DESIRE_STOPPED:
                    self._stop(ws, backend)
                else:
                    self._run(ws, backend)
            except DevenvError as failure:
                error = failure
                self._fail(ws, failure)
            except Superseded:
                raise
            except Exception as unexpected:  # keep the daemon alive; the record says what happened
                log.exception("converging %s", name)
                error = DevenvError(f"internal error while converging {name}: {unexpected!r}")
                self._fail(ws, error)
        except Superseded:  # the newer request's run settles it; nothing more of this one is recorded
            log.info("converging %s: generation %d superseded by a newer request", name, ws.generation)
            return
        self._settle(name, ws.generation, error)

    def observe(self, ws: Workspace, backend: Backend) -> Observed | None:
        return next((seen for seen in backend.list_workspaces() if seen.workspace == ws.name), None)

    def _run(self, ws: Workspace, backend: Backend) -> None:
        handle = Handle.for_workspace(ws.name)
        if isinstance(backend, Provisioner):  # a machine first (a cloud instance), then everything happens there
            self.set_state(ws, ws.state, f"provisioning a machine on {backend.name}")
            spec = self.projects.open(self.projects.load(ws.project_hash)).spec if ws.project_hash else None
            backend.provision(ws.name, spec.resources.gpu if spec else None, self._progress(ws.name))
            backend = backend.host(ws.name)
        observed = self.observe(ws, backend)
        if observed is not None and not observed.running and self._gpus_taken(ws, observed, backend):
            self.set_state(
                ws,
                states.STARTING,
                "its GPUs were given to another workspace while it was stopped: "
                "a new container with free ones (home kept)",
            )
            backend.remove_container(handle)
            observed = None
        wanted = self._wanted_image_hash(ws)
        current = observed is not None and not ws.recreate and wanted is not None and observed.image_hash == wanted
        if not current:  # a new workspace, a changed project, a rebuild: make sure the image is there
            if ws.project_hash is not None:
                self._build(ws, backend)
            if observed is not None and (ws.recreate or observed.image_hash != ws.image_hash):
                self.set_state(ws, states.STARTING, "replacing the container (home kept)")
                backend.remove_container(handle)
                observed = None
            if ws.recreate:
                self.set_state(ws, states.STARTING, recreate=0)
        if observed is not None and observed.running:
            if self.setup is not None and (self.setup.outdated(ws) or lifecycle.failure(ws.setup)):
                self.set_state(ws, states.STARTING, "setting up")  # a daemon killed mid-setup, a changed spec, a hook
                self._hooks_ok(
                    ws,
                    observed,
                    self.setup.run(  # that failed: run again
                        ws, backend, status=lambda message: self.set_state(ws, states.STARTING, message)
                    ),
                )
            self._running(ws, observed)
            return
        if observed is None:
            if not ws.image_tag:
                raise DevenvError(
                    f"workspace {ws.name} has no container and no image to make one from",
                    hint="run `devenv up` in its project folder",
                )
            if not ws.ever_ran and ws.state != states.STARTING:  # after a crash mid-start it is ours already
                existed = any(volume.name == volume_name(ws.name) for volume in backend.list_volumes())
                self.set_state(ws, states.STARTING, volume_existed=int(existed))
            else:
                self.set_state(ws, states.STARTING)
            if ws.gpu:  # choosing free GPUs and taking them (the created container) is one step per host
                with self._named_lock(f"gpus@{backend.name}"):
                    self._create(ws, backend, self._launch_request(ws, backend))
            else:
                self._create(ws, backend, self._launch_request(ws, backend))
        else:
            self.set_state(ws, states.STARTING)
            files = self.access.workspace_files(ws)  # grants may have changed while stopped
            backend.put_files(handle, {**files, **(self.setup.env_files(ws) if self.setup else {})})
        observed = self._until_running(ws, backend, backend.start(handle))
        if self.setup is not None:  # secrets, pins, clone, data: before the workspace counts as running
            self._hooks_ok(
                ws,
                observed,
                self.setup.run(
                    ws, backend, env_placed=True, status=lambda message: self.set_state(ws, states.STARTING, message)
                ),
            )
        self._running(ws, observed)

    def _until_running(self, ws: Workspace, backend: Backend, observed: Observed) -> Observed:
        """A batch backend's start only submits a job: the workspace stays starting, with the scheduler's words
        ("PENDING (Resources)"), until its container runs. A Docker engine's start returns it running (or exited,
        which the reconciler shows as stopped, as before)."""
        deadline = time.monotonic() + START_WITHIN
        said = ""
        while observed.status == "created":  # submitted, not yet running (an exited one is the reconciler's)
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{ws.name} did not start on {backend.name} within {START_WITHIN // 60} min: {observed.detail}",
                    hint="`devenv start` submits it again",
                )
            if observed.detail != said:
                said = observed.detail
                self.set_state(ws, states.STARTING, f"waiting: {said}" if said else None)
            time.sleep(1)
            observed = self.observe(ws, backend) or observed
        return observed

    def _hooks_ok(self, ws: Workspace, observed: Observed, setup: dict[str, Any]) -> None:
        """A failed hook fails the workspace, which is not rolled back: its container runs on, home kept."""
        failed = lifecycle.failure(setup)
        if failed is not None:
            self.set_state(
                ws,
                states.STARTING,
                ws.reason,
                ever_ran=1,
                container_id=observed.container_id,
                ssh_port=observed.ports.get(SSH_PORT),
                started_at=time.time(),
                last_active_at=time.time(),
            )
            raise failed

    def _create(self, ws: Workspace, backend: Backend, request: LaunchRequest) -> None:
        """Create the container; a DVC directory remote missing on the engine's host does not stop it
        (the data step then says what is wrong), as a remote that does not answer would not."""
        try:
            backend.create(request)
        except MountSourceMissing as missing:
            if not request.binds:
                raise
            self.events.record(
                ws.name,
                "setup",
                f"{missing.message}; the workspace starts without it "
                f"(fix: {missing.hint}, then `devenv rebuild {ws.name}`)",
                actor="devenvd",
            )
            backend.create(replace(request, binds={}))

    def _wanted_image_hash(self, ws: Workspace) -> str | None:
        """The image the workspace's project makes (None until it has a lock); adopted ones keep theirs."""
        if ws.project_hash is None:
            return ws.image_hash
        upload = self.projects.load(ws.project_hash)
        if not upload.has_lock:
            return None
        return self.projects.plan(upload).image_hash

    def _running(self, ws: Workspace, observed: Observed) -> None:
        self.set_state(
            ws,
            states.RUNNING,
            ever_ran=1,
            container_id=observed.container_id,
            ssh_port=observed.ports.get(SSH_PORT),
            last_active_at=time.time(),
            started_at=time.time(),
            error_code=None,
        )

    def _build(self, ws: Workspace, backend: Backend) -> None:
        if not isinstance(backend, ImageBuilder):
            raise Unsupported(f"backend {backend.name} cannot build images")
        upload = self.projects.load(ws.project_hash or "")
        if not upload.has_lock:
            self.set_state(ws, states.BUILDING, "resolving pins into devenv.lock")
            upload = self._lock(ws, backend, upload)
        project = self.projects.open(upload)
        plan = self.projects.plan(upload)
        if ws.state != states.BUILDING:
            self.set_state(ws, states.BUILDING)
        with self._named_lock(f"build@{plan.tag}"):  # ten workspaces of one project build it once
            result = backend.build(project, self._progress(ws.name))
        self.set_state(ws, states.BUILDING, image_tag=result.tag, image_hash=plan.image_hash)

    def _lock(self, ws: Workspace, backend: ImageBuilder, upload: Upload) -> Upload:
        progress = self._progress(ws.name)
        locked = self.projects.resolve_lock(upload, lambda project: backend.lock(project, progress))
        digest = self.projects.save(locked)
        self.set_state(ws, states.BUILDING, "devenv.lock resolved", project_hash=digest)
        return locked

    def _named_lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def _progress(self, name: str) -> Callable[[ProgressEvent], None]:
        def forward(event: ProgressEvent) -> None:
            if event.kind in ("phase", "done"):
                self.events.record(name, "progress", event.message)
            else:
                data = {"kind": event.kind, "current": event.current, "total": event.total}
                self.events.live(name, "progress", event.message, data=data)

        return forward

    def _launch_request(self, ws: Workspace, backend: Backend) -> LaunchRequest:
        spec = None
        if ws.project_hash:
            spec = self.projects.open(self.projects.load(ws.project_hash)).spec
        gpu_count = gpu_kind = None
        gpu_ids: tuple[str, ...] = ()
        if spec is not None and spec.resources.gpu is not None:
            if not getattr(backend, "supports_gpu", False):
                raise Unsupported(
                    f"backend {backend.name} cannot attach GPUs; the spec asks for {spec.resources.gpu}",
                    hint="pick a backend with GPUs in devenv.yaml",
                )
            gpu_count, gpu_kind = spec.resources.gpu.count, spec.resources.gpu.type
            gpu_ids = self._gpu_ids(ws, backend, spec.resources.gpu)
        return LaunchRequest(
            workspace=ws.name,
            owner=ws.owner,
            image=ws.image_tag or "",
            image_hash=ws.image_hash or "",
            cpu=spec.resources.cpu if spec else None,
            memory=spec.resources.memory if spec else None,
            gpu_count=gpu_count,
            gpu_kind=gpu_kind,
            gpu_ids=gpu_ids,
            ports=tuple(spec.ports) if spec else tuple(ws.ports),
            env=dict(spec.env) if spec else {},
            ssh=spec.ssh if spec else True,
            jupyter=spec.jupyter if spec else True,
            files={**self.access.workspace_files(ws), **(self.setup.env_files(ws) if self.setup else {})},
            binds=_data_binds(spec, self.projects, backend),
            daemon=self.daemon_id,
            shm=(spec.resources.shm if spec else None) or default_shm(spec.resources.memory if spec else None, backend),
            ulimits=dict(spec.resources.ulimits) if spec else {},
            time=spec.resources.time if spec else None,
        )

    def _gpu_ids(self, ws: Workspace, backend: Backend, request: GpuRequest) -> tuple[str, ...]:
        """Which GPUs the container gets, when the host lists its GPUs: free ones of the asked type, so two
        workspaces never share one. A host that cannot list them leaves the choice to Docker (by count)."""
        if not isinstance(backend, HostInspectable):
            return ()
        facts = backend.facts()
        if not facts.gpus:
            return ()
        chosen = choose_gpus(facts, request, backend.name)
        names = {gpu.index: gpu.name for gpu in facts.gpus}
        self.events.record(
            ws.name,
            "state",
            f"GPUs {', '.join(chosen)} of {backend.name} ({', '.join(sorted({names[index] for index in chosen}))})",
        )
        return chosen

    def _gpus_taken(self, ws: Workspace, observed: Observed, backend: Backend) -> bool:
        """A stopped container keeps the GPU ids it was made with: are any held by another workspace now?"""
        if not observed.gpu_ids or not isinstance(backend, HostInspectable):
            return False
        holders = {gpu.index: gpu.workspace for gpu in backend.facts().gpus}
        return any(holders.get(index) not in (None, ws.name) for index in observed.gpu_ids)

    def _stop(self, ws: Workspace, backend: Backend) -> None:
        why = ws.reason  # who or what asked: "stopped by alice", "autostop: idle for 30m"
        machine = backend if isinstance(backend, Provisioner) else None
        if machine is not None:
            try:
                backend = machine.host(ws.name)
            except DevenvError:  # its machine is not running: nothing inside to stop
                self.set_state(ws, states.STOPPED, why, ssh_port=None)
                return
        observed = self.observe(ws, backend)
        if observed is not None and observed.running:
            self.set_state(ws, states.STOPPING, why)
            backend.stop(Handle.for_workspace(ws.name))
        if observed is None:
            why = "its container is gone; `devenv start` makes a new one"
        if machine is not None:
            self.set_state(ws, states.STOPPING, f"{why}; stopping its machine" if why else "stopping its machine")
            machine.park(ws.name)
        self.set_state(ws, states.STOPPED, why, ssh_port=None)

    def _remove(self, ws: Workspace, backend: Backend, *, keep_volume: bool) -> None:
        """Container and home; for a provisioned machine, the machine itself (its disk holds the home)."""
        if isinstance(backend, Provisioner):
            backend.release(ws.name, keep_volume=keep_volume)
        else:
            backend.remove(Handle.for_workspace(ws.name), keep_volume=keep_volume)

    def _delete(self, ws: Workspace, backend: Backend) -> None:
        self.set_state(ws, states.DELETING)
        self._remove(ws, backend, keep_volume=bool(ws.keep_volume))
        if not self.records.delete(ws.name, generation=ws.generation):
            raise Superseded(ws.name)  # asked up again while it went: the next run makes it anew
        self.access.forget(ws.name)
        kept = " (home volume kept)" if ws.keep_volume else ""
        self.events.record(ws.name, "state", f"deleting -> deleted{kept}", data={"state": "deleted"})

    def _fail(self, ws: Workspace, error: DevenvError) -> None:
        current = self.load(ws.name)
        if current is None or current.generation != ws.generation:  # gone, or a newer request's run decides
            return
        if (
            not current.ever_ran
            and current.desired == states.DESIRE_RUNNING
            and not isinstance(error, EngineUnreachable)
        ):
            self._roll_back(current, error)
            return
        self.set_state(current, states.FAILED, error.message, error_code=error.code)

    def _roll_back(self, ws: Workspace, error: DevenvError) -> None:
        """A first `up` that failed leaves nothing behind: container, new home volume, record."""
        try:
            self._remove(ws, self.backends.get(ws.backend), keep_volume=bool(ws.volume_existed))
        except DevenvError as cleanup:
            self.set_state(
                ws, states.FAILED, f"{error.message} (and cleaning up failed: {cleanup.message})", error_code=error.code
            )
            return
        if not self.records.delete(ws.name, generation=ws.generation):
            return  # asked again meanwhile: the newer request's run starts it anew
        self.events.record(ws.name, "state", f"{ws.state} -> rolled back: {error.message}", data={"state": "deleted"})
