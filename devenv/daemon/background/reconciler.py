"""The reconciler: compares the store (desired) with the engines (observed) and converges.

One list call per engine per pass, whatever the number of workspaces. After a restart it adopts
containers labeled as ours, resumes work left half done, marks vanished containers `lost` with
the reason, and never removes a volume: homes are only deleted by an explicit `rm`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import Backend, Observed
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.converge import Converger, Superseded
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.scheduler import Scheduler
from devenv.daemon.store import states
from devenv.daemon.store.tables import Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import DevenvError, EngineUnreachable


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backends: Backends,
        converger: Converger,
        scheduler: Scheduler,
        events: EventLog,
    ) -> None:
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.backends = backends
        self.converger = converger
        self.scheduler = scheduler
        self.events = events
        self._unreachable: set[str] = set()

    def run_pass(self) -> None:
        for backend in self.backends.usable():
            try:
                observed = backend.list_workspaces()
            except DevenvError as error:
                if backend.name not in self._unreachable:
                    self._unreachable.add(backend.name)
                    self.events.record(None, "reconcile", f"backend {backend.name}: {error.message}")
                self._gone_away(backend, error)
                continue
            if backend.name in self._unreachable:
                self._unreachable.discard(backend.name)
                self.events.record(None, "reconcile", f"backend {backend.name} answers again")
            self._reconcile(backend, observed)

    def _gone_away(self, backend: Backend, error: DevenvError) -> None:
        """The engine does not answer (a host down, a network cut): its running workspaces are lost, with
        the reason, until it answers again and the next pass finds them running."""
        for ws in self.records.on_backend(backend.name, up_only=True):
            if not self.scheduler.busy(ws.name):
                self._set(
                    ws,
                    states.LOST,
                    f"{backend.name} does not answer ({error.message}); it comes back by itself when the host does",
                    ssh_port=None,
                    error_code=EngineUnreachable.code,
                )

    def _reconcile(self, backend: Backend, observed: list[Observed]) -> None:
        by_name = {seen.workspace: seen for seen in observed}
        records = self.records.on_backend(backend.name)
        known = {ws.name for ws in records}
        for ws in records:
            if not self.scheduler.busy(ws.name):
                self._check(ws, by_name.get(ws.name), backend)
        for seen in observed:
            if seen.workspace not in known and self._ours(seen):
                self._adopt(seen, backend)

    def _ours(self, seen: Observed) -> bool:
        """Made by this store's daemon, or before containers were labelled with one: another daemon's
        workspace on a shared engine is theirs to run, stop and remove, never ours to adopt."""
        mine = self.converger.daemon_id
        return seen.daemon is None or mine is None or seen.daemon == mine

    def _check(self, ws: Workspace, seen: Observed | None, backend: Backend) -> None:
        if seen is not None and seen.status == "removing":  # going as we look: it is gone, not stopped
            seen = None
        if ws.state in states.IN_PROGRESS or ws.desired == states.DESIRE_DELETED:
            self.scheduler.schedule(ws.name)  # left half done (a restart): finish it
            return
        if (
            ws.state == states.FAILED
            and ws.error_code == EngineUnreachable.code
            and ws.desired == states.DESIRE_RUNNING
        ):
            self.scheduler.schedule(ws.name)  # failed because its host went away, which answers now: go on
            return
        if ws.desired == states.DESIRE_RUNNING and states.container_up(ws.state, ws.error_code):
            if seen is None:
                self._set(
                    ws,
                    states.LOST,
                    f"container devenv-{ws.name} vanished from "
                    f"{backend.name} ({backend.url}); `devenv start` makes a new one "
                    "with the same home",
                    ssh_port=None,
                )
            elif seen.status == "dead":  # its host failed under it (a Slurm node down): nothing to start again
                self._set(
                    ws,
                    states.LOST,
                    f"{seen.detail} on {backend.name}; `devenv start` makes a new one with the same home",
                    ssh_port=None,
                )
            elif not seen.running:
                self._set(
                    ws,
                    states.STOPPED,
                    f"stopped outside devenv ({seen.detail})",
                    ssh_port=None,
                    desired=states.DESIRE_STOPPED,
                )
            elif seen.ports.get(22) != ws.ssh_port:
                self._set(ws, ws.state, ws.reason, ssh_port=seen.ports.get(22))  # a failed hook stays so
        elif ws.state in (states.LOST, states.STOPPED) and seen is not None and seen.running:
            self._set(
                ws,
                states.RUNNING,
                "found running again",
                desired=states.DESIRE_RUNNING,
                container_id=seen.container_id,
                ssh_port=seen.ports.get(22),
                started_at=time.time(),
                error_code=None,
            )
        elif ws.state == states.LOST and seen is not None and seen.status != "dead":
            self._set(ws, states.STOPPED, "its container is back", desired=states.DESIRE_STOPPED, error_code=None)
        elif ws.state == states.LOST and seen is None and ws.error_code == EngineUnreachable.code:
            self._set(
                ws,
                states.LOST,
                f"{backend.name} answers again, but container devenv-{ws.name} "
                "is gone from it; `devenv start` makes a new one with the same home",
                error_code=None,
            )

    def _set(self, ws: Workspace, state: str, reason: str | None = None, **fields: Any) -> None:
        """The converger's write, at the generation this pass read: a request since (its run converges it) wins."""
        with contextlib.suppress(Superseded):
            self.converger.set_state(ws, state, reason, **fields)

    def _adopt(self, seen: Observed, backend: Backend) -> None:
        """A container labeled as ours with no record (a store restored from backup, a lost row)."""
        state = states.RUNNING if seen.running else states.STOPPED
        if not self.records.adopt(
            seen.workspace,
            owner=seen.owner or "unknown",
            backend=backend.name,
            state=state,
            image_hash=seen.image_hash,
            container_id=seen.container_id,
            ssh_port=seen.ports.get(22),
            ports=[],
            ever_ran=1,
            last_active_at=time.time(),
            started_at=time.time() if seen.running else None,
        ):
            return
        self.events.record(
            seen.workspace, "reconcile", f"adopted container {seen.container_name} ({state}) found on {backend.name}"
        )
