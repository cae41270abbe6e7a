"""The daemon's background passes (reconcile, autostop, access expiry) each on its own thread, at its own pace.

A pass that raises is logged, and the next one still runs after the interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("devenvd.loop")


class Loop:
    """Calls `work` every `interval` seconds on its own thread until stopped (or woken early); what it returns is
    dropped (a pass may report a count)."""

    def __init__(self, name: str, work: Callable[[], object], interval: float) -> None:
        self.work = work
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.work()
            except Exception:
                log.exception("%s pass failed", self._thread.name)
            self._wake.wait(self.interval)
            self._wake.clear()
