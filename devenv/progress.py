"""Progress reporting for long work (bootstrap, downloads, builds), decoupled from any display.

Library code calls a `Progress` callback; the CLI renders events with rich, the daemon will
forward them as workspace events. A `None` callback means nobody is watching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["phase", "step", "log", "download", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    kind: EventKind
    message: str
    current: int | None = None
    total: int | None = None


Progress = Callable[[ProgressEvent], None]


def emit(progress: Progress | None, kind: EventKind, message: str, **counts: int | None) -> None:
    if progress is not None:
        progress(ProgressEvent(kind, message, counts.get("current"), counts.get("total")))
