"""What the grant table says: who holds which grant on a workspace now, and each person's marker.

Read by the who-may checks (access.py), by the files and sweeps a running workspace gets
(access_container.py), and by setup and exec (who is withheld the owner's secrets, whose marker an
exec carries); kept apart so that each of them reads the table the same way without importing the others.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from devenv.access.markers import Marker, assign
from devenv.daemon.store.tables import Grant


def _stamp(moment: dt.datetime | None) -> float | None:
    """Unix time of a stored moment (SQLite hands back naive datetimes, which are UTC here)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


# Whether the store keeps a grant's --share-secrets yet (a column of its own, added by a migration).


def _shares(row: Grant) -> bool:
    return bool(row.share_secrets)


def grant_json(row: Grant) -> dict[str, Any]:
    return {
        "person": row.person,
        "ssh": row.ssh,
        "jupyter": row.jupyter,
        "expires_at": row.expires_at,
        "granted_by": row.granted_by,
        "granted_at": _stamp(row.granted_at),
        "ended_at": _stamp(row.ended_at),
        "ended_by": row.ended_by,
        "share_secrets": _shares(row),
    }


def live_grants(session: Session, workspace: str, now: float | None = None) -> list[Grant]:
    now = time.time() if now is None else now
    rows = session.scalars(select(Grant).where(Grant.workspace == workspace, Grant.ended_at.is_(None)))
    return [row for row in rows if row.expires_at is None or row.expires_at > now]


def markers(session: Session, workspace: str) -> dict[str, Marker]:
    """Every person ever granted on `workspace` (ended grants too: their processes may still be there)."""
    return assign(session.scalars(select(Grant.person).where(Grant.workspace == workspace).order_by(Grant.id)))


def live_marker(session: Session, workspace: str, person: str, kind: str) -> Marker | None:
    """`person`'s marker while they hold a live `kind` grant on `workspace` (never the owner's: none)."""
    if not any(row.person == person and getattr(row, kind) for row in live_grants(session, workspace)):
        return None
    return markers(session, workspace).get(person)


def withholding_secrets(session: Session, workspace: str) -> list[str]:
    """People with a live grant who were not given the owner's personal secrets (--share-secrets)."""
    return sorted(row.person for row in live_grants(session, workspace) if not _shares(row))
