"""Who is calling: the unix socket's owner (the socket is the credential), or a bearer token.

A token's name is the person it belongs to: the owner of what they create, the principal on their
SSH certificates, the name grants use. Tokens are random, shown once, and stored only as SHA-256,
so a copy of the store lets nobody in. The socket's owner runs the daemon and is its admin; admin
tokens may also manage every workspace's access.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import secrets
import time
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from devenv.daemon.services.access import Caller, check_person
from devenv.daemon.store.tables import Secret, Token
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import Unauthorized, UsageError

TOKEN_PREFIX = "dvt_"


def local_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _holdings(records: WorkspaceRecords, session: Session, person: str) -> str:
    """What `person` made in the store, in words ('' for nothing): the test of an existing person. Grants do
    not count: access is often given to a name before its token is made."""
    counts = [
        (records.count_owned_by(person, session=session), "workspaces"),
        (session.scalar(select(func.count(Secret.id)).where(Secret.person == person)), "secrets"),
    ]
    return ", ".join(f"{count} {what}" for count, what in counts if count)


class Tokens:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._touched: dict[str, float] = {}

    def create(self, name: str, *, admin: bool = False, reissue: bool = False) -> str:
        """A new token for person `name`. A token names a person, so a name that already holds things
        (workspaces, secrets) is that person's: giving it out again must be said (`reissue`).
        The socket owner's name is never a token's: its holder would be the daemon's own user."""
        check_person(name)
        if name == local_actor():
            raise UsageError(
                f"{name!r} is the daemon's own user (the unix socket's owner)",
                hint="pick another name for the token's person",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.sessions.begin() as session:
                holds = _holdings(WorkspaceRecords(self.sessions), session, name)
                if holds and not reissue:
                    raise UsageError(
                        f"{name!r} is an existing person here ({holds}): a token by that name would be theirs",
                        hint=f"pick another name, or, to give {name} a new "
                        f"token, `devenvd token create {name} --reissue`",
                    )
                session.add(Token(name=name, token_hash=_digest(token), admin=admin))
        except IntegrityError:
            raise UsageError(
                f"a token named {name!r} exists already",
                hint=f"`devenvd token revoke {name}` first, or pick another name",
            ) from None
        return token

    def revoke(self, name: str) -> bool:
        with self.sessions.begin() as session:
            result = cast(CursorResult[Any], session.execute(delete(Token).where(Token.name == name)))  # DML
            return bool(result.rowcount)

    def names(self) -> list[tuple[str, dt.datetime, dt.datetime | None, bool]]:
        with self.sessions() as session:
            return [
                (row.name, row.created_at, row.last_used_at, row.admin)
                for row in session.scalars(select(Token).order_by(Token.name))
            ]

    def verify(self, header: str | None) -> Caller:
        """The token's name for an `Authorization: Bearer ...` header; Unauthorized otherwise."""
        if not header or not header.lower().startswith("bearer "):
            raise Unauthorized(
                "this daemon needs a token (Authorization: Bearer ...)",
                hint="`devenv login URL --token TOKEN`; an admin makes one with `devenvd token create NAME`",
            )
        presented = _digest(header[7:].strip())
        with self.sessions() as session:
            row = session.scalars(select(Token).where(Token.token_hash == presented)).one_or_none()
            if row is None or not hmac.compare_digest(row.token_hash, presented):
                raise Unauthorized(
                    "the token was not accepted (revoked or mistyped)",
                    hint="ask for a new token, then `devenv login` again",
                )
            name, admin = row.name, row.admin
        now = time.monotonic()
        if now - self._touched.get(name, -1e9) > 60:  # "last used" to the minute: no write per request
            self._touched[name] = now
            with self.sessions.begin() as session:
                session.execute(update(Token).where(Token.name == name).values(last_used_at=dt.datetime.now(dt.UTC)))
        return Caller(name, admin=admin)
