"""One converger run per workspace at a time, on worker threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("devenvd.converge")


class Scheduler:
    """Runs the converger for a workspace on a worker thread; one run per workspace at a time.

    A request arriving while a run is under way is remembered and runs again right after, so the
    latest desired state always wins and no two threads drive one workspace.
    """

    def __init__(self, run: Callable[[str], None], *, workers: int = 16) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="converge")
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._again: set[str] = set()

    def schedule(self, name: str) -> None:
        with self._lock:
            if name in self._active:
                self._again.add(name)
                return
            self._active.add(name)
        self._pool.submit(self._loop, name)

    def busy(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def _loop(self, name: str) -> None:
        while True:
            try:
                self._run(name)
            except Exception:  # the converger records its own errors; this is a bug guard
                log.exception("converging %s failed unexpectedly", name)
            with self._lock:
                if name in self._again:
                    self._again.discard(name)
                    continue
                self._active.discard(name)
                return

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
