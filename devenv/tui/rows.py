"""What the dashboard shows of a workspace: one row of short cells, coloured by state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from devenv import wire

COLUMNS = [
    ("NAME", "name"),
    ("STATE", "state"),
    ("ENGINE", "backend"),
    ("GPU", "gpu"),
    ("IMAGE", "image"),
    ("UP", "up"),
    ("AUTOSTOP", "autostop"),
    ("OWNER", "owner"),
]
STATE_STYLES = {"running": "green", "failed": "red", "lost": "red", "stopped": "dim"}
IDLE_SHOWN_AFTER = 60.0


def state_text(state: str) -> Text:
    """Running green, broken red, stopped dim; anything on its way somewhere yellow."""
    return Text(state, style=STATE_STYLES.get(state, "yellow"))


def countdown(seconds: int | float | None) -> str:
    """29m58s, 1h02m, 45s; "-" when the workspace has no autostop running."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def up_time(workspace: wire.WorkspaceView, now: float) -> str:
    """How long it has run, or how long it has been idle once that passes a minute ("idle 5m")."""
    started = workspace.get("started_at")
    if not started:
        return "-"
    active = workspace.get("last_active_at")
    if active and now - active >= IDLE_SHOWN_AFTER:
        return f"idle {countdown(now - active)}"
    return countdown(now - started)


def row_cells(workspace: wire.WorkspaceView, now: float | None = None) -> dict[str, str | Text]:
    """The dashboard's cells for one workspace, keyed by column."""
    now = time.time() if now is None else now
    return {
        "name": workspace["name"],
        "state": state_text(workspace.get("state") or "?"),
        "backend": workspace.get("backend") or "-",
        "gpu": workspace.get("gpu") or "-",
        "image": (workspace.get("image_hash") or "-")[:12],
        "up": up_time(workspace, now),
        "autostop": countdown(workspace.get("autostop_in")),
        "owner": workspace.get("owner") or "-",
    }
