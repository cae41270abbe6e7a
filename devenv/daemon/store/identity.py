"""The store's id: made once, kept in the store, so a store restored elsewhere still knows its own
containers, and two daemons on one engine (two people, two test runs) never take each other's."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from devenv.daemon.store.tables import DaemonMeta

_KEY = "id"


def store_id(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        row = session.get(DaemonMeta, _KEY)
        if row is not None:
            return row.value
    try:
        with sessions.begin() as session:
            session.add(DaemonMeta(key=_KEY, value=secrets.token_hex(8)))
    except IntegrityError:  # another daemon process on this store made it first
        pass
    with sessions() as session:
        row = session.get(DaemonMeta, _KEY)
        assert row is not None
        return row.value
