"""The one owner of workspace records: every read and write of the `workspaces` table goes through here.

A request (up, start, stop, rm, rebuild; autostop's stop too) changes `desired` and bumps the generation; the
converger then moves `state` toward it, writing each state with compare-and-set on the generation it converges
(`set_state(..., generation=G)`): once a newer request has bumped it, the older run's writes are refused (False)
and that run stops; the newer request's run, scheduled when it was recorded, goes on from where the record is.

Returned records are ORM objects detached from their session (expire_on_commit is off), read whole; a caller
that passes its own `session` gets them attached to it, read in its transaction with its other rows.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    String,
    case,
    delete,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, sessionmaker

from devenv.daemon.store import states
from devenv.daemon.store.tables import Workspace, container_up_clause
from devenv.errors import UsageError

# what a listing shows (services.workspaces.workspace_json): selected alone, not the code manifest nor times unshown
LISTED = (
    Workspace.name,
    Workspace.owner,
    Workspace.backend,
    Workspace.state,
    Workspace.desired,
    Workspace.reason,
    Workspace.error_code,
    Workspace.image_tag,
    Workspace.image_hash,
    Workspace.container_id,
    Workspace.ssh_port,
    Workspace.ports,
    Workspace.autostop_seconds,
    Workspace.last_active_at,
    Workspace.generation,
    Workspace.gpu,
    Workspace.started_at,
    Workspace.created_at,
    Workspace.setup,
    Workspace.pins,
)


# what tells that a listed row changed (every write bumps updated_at; the rest: writes that bypass the ORM), and
# what a listing computes at each read (autostop's countdown, a cloud price): cheap columns, read for every row
VERSIONED = (
    Workspace.name,
    type_coerce(Workspace.updated_at, String).label("updated"),
    Workspace.generation,
    Workspace.state,
    Workspace.desired,
    Workspace.error_code,
    Workspace.container_id,
    Workspace.ssh_port,
    Workspace.backend,
    Workspace.autostop_seconds,
    Workspace.last_active_at,
)


class Versioned(NamedTuple):
    """A row of VERSIONED, read packed (`_packed`): the same names and values as the Row SQLAlchemy gives."""

    name: str
    updated: str
    generation: int
    state: str
    desired: str
    error_code: str | None
    container_id: str | None
    ssh_port: int | None
    backend: str
    autostop_seconds: int | None
    last_active_at: float | None


def _packed(session: Session, statement: Select[Any]) -> builtins.list[Any]:
    """The page's rows as one JSON value SQLite builds: one row to fetch, not `limit`. Python's sqlite3 gives
    the GIL away at each row it steps through, and under 200 clients each hand-back waits behind the other
    threads (seen: 42% of the daemon's samples in fetchall, for 0.13 ms of SQLite's work). Floats go through
    printf's 20 digits (the `!` flag), which give the same double back (SQLite's JSON and %g write 15 or 16)."""
    page = statement.subquery()
    values = [
        case((column.is_(None), None), else_=func.printf("%!.20e", column))
        if column.key == "last_active_at"
        else column
        for column in page.c
    ]
    packed = session.scalar(select(func.json_group_array(func.json_array(*values))).select_from(page))
    rows = [Versioned(*item) for item in json.loads(packed or "[]")]
    return sorted(
        (row._replace(last_active_at=float(row.last_active_at)) if row.last_active_at is not None else row)
        for row in rows
    )


@dataclass(frozen=True)
class Requested:
    """A request was recorded (`changed`), or found the workspace there already (a no-op): wait for `generation`."""

    previous: str  # the state before the request
    generation: int
    changed: bool


class WorkspaceRecords:
    """Load, list, request a change, set a state (compare-and-set on the generation), delete."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @contextmanager
    def _reading(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
            return
        with self.sessions() as own:
            yield own

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str, *, session: Session | None = None) -> Workspace | None:
        with self._reading(session) as db:
            return db.scalars(select(Workspace).where(Workspace.name == name)).one_or_none()

    def owner_of(self, name: str, *, deleting: bool = True, session: Session | None = None) -> str | None:
        """The workspace's owner; None when there is no such record (nor, with `deleting=False`, one being
        deleted: a workspace asked away is nobody's to see)."""
        statement = select(Workspace.owner).where(Workspace.name == name)
        if not deleting:
            statement = statement.where(Workspace.desired != states.DESIRE_DELETED)
        with self._reading(session) as db:
            return db.scalar(statement)

    def names_owned_by(self, person: str, *, session: Session | None = None) -> builtins.list[str]:
        with self._reading(session) as db:
            return list(db.scalars(select(Workspace.name).where(Workspace.owner == person)))

    def count_owned_by(self, person: str, *, session: Session | None = None) -> int:
        with self._reading(session) as db:
            return int(db.scalar(select(func.count(Workspace.id)).where(Workspace.owner == person)) or 0)

    def on_backend(
        self, backend: str, *, up_only: bool = False, session: Session | None = None
    ) -> builtins.list[Workspace]:
        """The records on one backend; `up_only`: those whose container runs (states.container_up)."""
        statement = select(Workspace).where(Workspace.backend == backend)
        if up_only:
            statement = statement.where(container_up_clause())
        with self._reading(session) as db:
            return list(db.scalars(statement).all())

    def count_by_backend(self) -> dict[str, int]:
        with self.sessions() as session:
            rows = session.execute(select(Workspace.backend, func.count(Workspace.id)).group_by(Workspace.backend))
            return {backend: int(count) for backend, count in rows.all()}

    def autostop_candidates(self) -> builtins.list[Workspace]:
        """Running (or a failed hook's kept container), meant to run, with an autostop."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Workspace).where(
                        container_up_clause(),
                        Workspace.desired == states.DESIRE_RUNNING,
                        Workspace.autostop_seconds.is_not(None),
                    )
                ).all()
            )

    def code_records(self) -> builtins.list[dict[str, Any]]:
        """Every record's `code` (the uploaded folder it names, and what was placed), for those that have one."""
        with self.sessions() as session:
            return [
                code
                for code in session.scalars(select(Workspace.code).where(Workspace.code.is_not(None)))
                if code is not None
            ]

    def list(self, *, limit: int = 100, after: str | None = None) -> tuple[builtins.list[Workspace], int]:
        """A page of records by name (keyset, after `after`), and how many there are in all."""
        with self.sessions() as session:
            statement = select(Workspace)
            if after:
                statement = statement.where(Workspace.name > after)
            rows = list(session.scalars(statement.order_by(Workspace.name).limit(limit)).all())
            return rows, int(session.scalar(select(func.count()).select_from(Workspace)) or 0)

    def page_versions(
        self, *, owner: str | None, limit: int, after: str | None, visible: tuple[str, Select[Any]] | None
    ) -> tuple[builtins.list[Row[Any]], int]:
        """`page`'s rows as VERSIONED columns only (what says a row changed, and what a listing computes at
        each read), and its total: no JSON column decoded, no time parsed."""
        statement = select(*VERSIONED)
        if owner:
            statement = statement.where(Workspace.owner == owner)
        if after:
            statement = statement.where(Workspace.name > after)
        with self.sessions() as session:
            total = self._count(session, owner, visible)
            if visible is not None:
                statement = statement.where(self._visible(session, visible, total, limit))
            statement = statement.order_by(Workspace.name).limit(limit)
            if session.get_bind().dialect.name == "sqlite":
                return _packed(session, cast(Select[Any], statement)), total
            found: builtins.list[Row[Any]] = list(session.execute(statement))
            return found, total

    def listed(self, names: Collection[str]) -> builtins.list[Row[Any]]:
        """The LISTED columns of these records."""
        with self.sessions() as session:
            return list(session.execute(select(*LISTED).where(Workspace.name.in_(list(names)))).all())

    @staticmethod
    def _count(session: Session, owner: str | None, visible: tuple[str, Select[Any]] | None) -> int:
        """How many a listing has in all: a member's, their own plus the others' granted to them: two counts
        on indexes (one count of `owner = ? OR name IN (...)` reads many more rows). count(*), not count(id):
        SQLite answers an unfiltered count(*) from the table's b-tree pages alone (0.003 ms for 10,000, not 0.3)."""
        counting = select(func.count()).select_from(Workspace)
        if owner:
            counting = counting.where(Workspace.owner == owner)
        if visible is None:
            return int(session.scalar(counting) or 0)
        person, granted = visible
        own = session.scalar(counting.where(Workspace.owner == person)) if owner in (None, person) else 0
        others = session.scalar(counting.where(Workspace.name.in_(granted), Workspace.owner != person))
        return int(own or 0) + int(others or 0)

    @staticmethod
    def _visible(session: Session, visible: tuple[str, Select[Any]], seen: int, limit: int) -> ColumnElement[bool]:
        """A member's rows: theirs or granted to them. Both forms select the same rows; the form steers the
        plan. Seeing many of the store's workspaces, walking the names in order finds a page in a few hundred
        rows; seeing few, the owner index finds them all and they are sorted (about `limit * all / seen` rows
        read against `seen`). max(id) stands in for the number of rows: O(1)."""
        person, granted = visible
        everyone = int(session.scalar(select(func.max(Workspace.id))) or 0)
        mine = Workspace.owner == person
        if seen * seen > limit * everyone:
            mine = func.coalesce(Workspace.owner, "") == person  # no index on the expression: the name order
        return or_(mine, Workspace.name.in_(granted))

    # -- requests: desired state, and the generation a client waits for --------------------------------

    def record_up(self, actor: str, name: str, backend: str, fields: dict[str, Any]) -> tuple[int, bool, bool]:
        """`devenv up`: insert the record, or ask an existing one to run the upload `fields` name; returns
        (generation, created, no-op). IntegrityError when a concurrent `up` of the name inserted it first."""
        with self.sessions.begin() as session:
            ws = session.scalars(select(Workspace).where(Workspace.name == name)).one_or_none()
            if ws is None:
                session.add(
                    Workspace(
                        name=name,
                        owner=actor,
                        backend=backend,
                        generation=1,
                        desired=states.DESIRE_RUNNING,
                        state=states.PENDING,
                        **fields,
                    )
                )
                return 1, True, False
            if ws.backend != backend:
                raise UsageError(
                    f"workspace {name} runs on backend {ws.backend}, the spec says {backend}",
                    hint=f"`devenv rm {name}` first to move it",
                )
            noop = (
                ws.desired == states.DESIRE_RUNNING
                and ws.project_hash == fields["project_hash"]
                and ws.state == states.RUNNING
            )
            if noop:
                return ws.generation, False, True
            if (
                ws.desired == states.DESIRE_RUNNING
                and ws.project_hash == fields["project_hash"]
                and ws.state in states.IN_PROGRESS
            ):
                return ws.generation, False, False  # the same `up` under way: wait for it, change nothing
            ws.desired, ws.generation, ws.error_code = states.DESIRE_RUNNING, ws.generation + 1, None
            ws.state = ws.state if ws.state in states.IN_PROGRESS else states.PENDING
            for key, value in fields.items():
                setattr(ws, key, value)
            return ws.generation, False, False

    def request(
        self,
        name: str,
        *,
        desired: states.Desire,
        state: states.State,
        unless: Collection[str],
        only_up: bool = False,
        **fields: Any,
    ) -> Requested | None:
        """Ask for `desired` (start, stop, rm, rebuild): the state it enters and `fields` written, the generation
        bumped; a no-op when the record wants `desired` already and is in one of `unless` states (and no
        `recreate` is asked). None when there is no such record, or, with `only_up`, when it is no longer
        running and meant to (autostop's stop must not undo a person's request that came first)."""
        with self.sessions.begin() as session:
            ws = session.scalars(select(Workspace).where(Workspace.name == name).with_for_update()).one_or_none()
            if ws is None:
                return None
            if only_up and not (ws.desired == states.DESIRE_RUNNING and states.container_up(ws.state, ws.error_code)):
                return None
            previous = ws.state
            if ws.desired == desired and ws.state in unless and not fields.get("recreate"):
                return Requested(previous, ws.generation, False)
            generation = ws.generation + 1
            session.execute(
                update(Workspace)
                .where(Workspace.name == name)
                .values(desired=desired, state=state, generation=generation, error_code=None, **fields)
            )
            return Requested(previous, generation, True)

    # -- the converger's and the reconciler's writes -------------------------------------------------------

    def set_state(
        self, name: str, state: states.State, *, generation: int | None = None, reason: str | None = None, **fields: Any
    ) -> bool:
        """Write the state, its reason (None clears it) and `fields`. With `generation`: only while the record
        is at that generation (compare-and-set); False when a newer request moved it on, or it is gone."""
        statement = update(Workspace).where(Workspace.name == name)
        if generation is not None:
            statement = statement.where(Workspace.generation == generation)
        with self.sessions.begin() as session:
            result = cast(CursorResult[Any], session.execute(statement.values(state=state, reason=reason, **fields)))
            return bool(result.rowcount)

    def delete(self, name: str, *, generation: int | None = None) -> bool:
        """Remove the record (a finished delete, a rolled-back first start); with `generation`, only at it."""
        statement = delete(Workspace).where(Workspace.name == name)
        if generation is not None:
            statement = statement.where(Workspace.generation == generation)
        with self.sessions.begin() as session:
            return bool(cast(CursorResult[Any], session.execute(statement)).rowcount)

    def adopt(self, name: str, *, owner: str, backend: str, state: states.State, **fields: Any) -> bool:
        """A record for a container labeled as ours that has none (a store restored from a backup); False when
        one exists by now."""
        with self.sessions.begin() as session:
            if session.scalars(select(Workspace.id).where(Workspace.name == name)).first() is not None:
                return False
            session.add(Workspace(name=name, owner=owner, backend=backend, desired=state, state=state, **fields))
            return True

    # -- facts about a workspace, kept on its record (no generation: true whatever was asked) ------------

    def touch_active(self, name: str, when: float) -> None:
        with self.sessions.begin() as session:
            session.execute(update(Workspace).where(Workspace.name == name).values(last_active_at=when))

    def set_setup(self, name: str, setup: dict[str, Any]) -> None:
        with self.sessions.begin() as session:
            session.execute(update(Workspace).where(Workspace.name == name).values(setup=setup))

    def edit_setup(self, name: str, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> Workspace | None:
        """Read, change and write the setup record in one transaction; the record after, or None (no record)."""
        with self.sessions.begin() as session:
            ws = session.scalars(select(Workspace).where(Workspace.name == name).with_for_update()).one_or_none()
            if ws is not None:
                ws.setup = edit(dict(ws.setup or {}))
            return ws

    def merge_code(self, name: str, entries: dict[str, Any]) -> None:
        """Add `entries` to the record's `code` (the upload it names; `placed`: what is in the workspace)."""
        with self.sessions.begin() as session:
            ws = session.scalars(select(Workspace).where(Workspace.name == name).with_for_update()).one_or_none()
            if ws is not None:
                ws.code = {**(ws.code or {}), **entries}
