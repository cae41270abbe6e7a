"""Autostop: stop a workspace idle longer than its `autostop`, where idle is ML-aware.

A workspace is idle only when nobody is in it by SSH, no Jupyter kernel is busy (a cell that has
run for ten hours is still work), nobody touched JupyterLab, CPU is under a threshold and, with
GPUs, every GPU is under a threshold. The probe runs inside the container (idle-probe, one exec per
workspace per pass); the reason for every stop goes into the events.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import Handle
from devenv.daemon.background.idle import IdleSample, IdleThresholds, assess, parse_probe
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.converge import Scheduler
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.workspaces import ExecTracker
from devenv.daemon.store import states
from devenv.daemon.store.tables import Workspace, container_up_clause
from devenv.errors import DevenvError

log = logging.getLogger("devenvd.autostop")

PROBE = ["/usr/bin/python3", "/opt/devenv/bin/idle-probe"]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Autostop:
    def __init__(self, sessions: sessionmaker[Session], backends: Backends, scheduler: Scheduler,
                 events: EventLog, thresholds: IdleThresholds, execs: ExecTracker) -> None:
        self.execs = execs
        self.sessions = sessions
        self.backends = backends
        self.scheduler = scheduler
        self.events = events
        self.thresholds = thresholds
        self._samples: dict[str, IdleSample] = {}
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="autostop")

    def run_pass(self) -> None:
        with self.sessions() as session:
            candidates = session.scalars(select(Workspace).where(
                container_up_clause(), Workspace.desired == states.DESIRE_RUNNING,
                Workspace.autostop_seconds.is_not(None))).all()
        names = {ws.name for ws in candidates}
        for gone in set(self._samples) - names:
            del self._samples[gone]
        list(self._pool.map(self._check, candidates))

    def _sample(self, ws: Workspace) -> IdleSample:
        backend = self.backends.get(ws.backend)
        stream = backend.exec(Handle.for_workspace(ws.name), PROBE, user="root")
        output = b"".join(chunk for name, chunk in stream if name == "stdout")
        if stream.exit_code != 0:
            raise DevenvError(f"the idle probe exited {stream.exit_code}")
        return parse_probe(output.decode(errors="replace"))

    def _check(self, ws: Workspace) -> None:
        if self.execs.count(ws.name):  # a command started by `devenv exec` is still running: work
            self._touch(ws.name, time.time())
            self._samples.pop(ws.name, None)
            return
        try:
            current = self._sample(ws)
        except DevenvError as error:  # no probe in an old image, a container just stopping...
            log.info("idle probe of %s: %s", ws.name, error.message)
            return
        verdict = assess(self._samples.get(ws.name), current, self.thresholds)
        self._samples[ws.name] = current
        now = time.time()
        if verdict.active:
            self._touch(ws.name, now)
            return
        idle_since = ws.last_active_at or now
        limit = ws.autostop_seconds or 0
        if now - idle_since < limit:
            return
        with self.sessions.begin() as session:
            changed = cast(CursorResult[Any], session.execute(  # DML: a CursorResult, with its rowcount
                update(Workspace).where(Workspace.name == ws.name, Workspace.desired == states.DESIRE_RUNNING,
                                        container_up_clause())
                .values(desired=states.DESIRE_STOPPED, state=states.STOPPING,
                        generation=Workspace.generation + 1,
                        reason=f"autostop: idle for {_duration(now - idle_since)}"))).rowcount
        if changed:
            self.events.record(ws.name, "autostop",
                               f"stopping: idle for {_duration(now - idle_since)} (autostop {_duration(limit)}): "
                               f"{verdict.summary}")
            self.scheduler.schedule(ws.name)

    def _touch(self, name: str, now: float) -> None:
        with self.sessions.begin() as session:
            session.execute(update(Workspace).where(Workspace.name == name).values(last_active_at=now))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
