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

from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import Handle
from devenv.daemon.background.idle import IdleSample, IdleThresholds, assess, parse_probe
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.workspaces import ExecTracker, WorkspaceService
from devenv.daemon.store.tables import Workspace
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
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backends: Backends,
        workspaces: WorkspaceService,
        events: EventLog,
        thresholds: IdleThresholds,
        execs: ExecTracker,
    ) -> None:
        self.execs = execs
        self.sessions = sessions
        self.records = workspaces.records
        self.backends = backends
        self.workspaces = workspaces  # a stop is asked as a person's `devenv stop` is
        self.events = events
        self.thresholds = thresholds
        self._samples: dict[str, IdleSample] = {}
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="autostop")

    def run_pass(self) -> None:
        candidates = self.records.autostop_candidates()
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
        idle = _duration(now - idle_since)  # asked only while it still runs and is meant to: a person's request wins
        self.workspaces.stop_idle(
            ws.name,
            f"autostop: idle for {idle}",
            f"stopping: idle for {idle} (autostop {_duration(limit)}): {verdict.summary}",
        )

    def _touch(self, name: str, now: float) -> None:
        self.records.touch_active(name, now)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
