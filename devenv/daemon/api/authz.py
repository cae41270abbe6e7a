"""Who may call each route: declared once per route, checked here, and walked by a test.

Five roles (DESIGN.md): anonymous, member (any valid token: their own things), a workspace's owner,
a grantee (ssh and/or jupyter on one workspace) and admin (the socket's user, admin tokens). Every
route names one `Rule` with `allow(rule)`; `check_declared` refuses to build an app where a route
names none, and tests/unit/test_route_roles.py calls every route of the OpenAPI document as every
role. A refusal says what the caller lacks; the owner is named only to those who may see the workspace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, APIWebSocketRoute
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import Mount, Route

from devenv.daemon.api.gate import gated_caller
from devenv.daemon.services.access import Caller
from devenv.daemon.store.tables import Grant, Snapshot
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import Forbidden, SnapshotNotFound, Unauthorized, WorkspaceNotFound

ACCESS_KEY = "x-devenv-access"


class Rule(StrEnum):
    ANYONE = "anyone"  # health; the git webhook (it proves itself with an HMAC signature)
    MEMBER = "member"  # any valid caller; the route shows or changes only what is theirs
    VIEWER = "viewer"  # the workspace {name}: its owner, anyone granted on it, an admin
    SSH = "ssh"  # the workspace {name}: its owner, an SSH grantee (an admin grants themselves first)
    JUPYTER = "jupyter"  # the workspace {name}: its owner, a Jupyter grantee (likewise)
    OWNER = "owner"  # the workspace {name}: its owner, an admin
    SNAPSHOT = "snapshot"  # the snapshot {snapshot_id}: whoever may see its workspace, who made it, an admin
    ADMIN = "admin"


# Events of no workspace that every member sees (the daemon's life, prebuilds); others (hosts, secrets)
# only their actor and admins.
TEAM_EVENT_KINDS = frozenset({"daemon", "prebuild"})

WORKSPACE_RULES = (Rule.VIEWER, Rule.SSH, Rule.JUPYTER, Rule.OWNER)

# Routes that are not declared with `allow` (the Jupyter proxy's, by prefix): their rule, declared here.
BUILT_IN: dict[str, Rule] = {}
# The proxy checks the person's Jupyter grant on every request and websocket message, by cookie.
PREFIX_RULES: dict[str, Rule] = {"/jupyter/": Rule.JUPYTER}


async def caller(request: Request) -> Caller:
    """Who is calling, as the gate (daemon/api/gate.py) decided before the body was read: the unix socket's owner
    (the daemon's admin), else the bearer token's person. The gate authenticates every /v1 route but health
    and the webhook, which ask for no caller. Async: from memory, so FastAPI runs it on the loop, not a thread."""
    found = gated_caller(request.scope)
    if found is None:
        raise Unauthorized(
            "this route needs a caller, and the request was not authenticated",
            hint="the app must run behind the gate (create_app installs it)",
        )
    return found


@dataclass(frozen=True)
class Relation:
    """What one caller is to one workspace."""

    exists: bool
    owner: str | None = None
    ssh: bool = False
    jupyter: bool = False

    @property
    def granted(self) -> bool:
        return self.ssh or self.jupyter


class Visibility:
    """Reads of the store that decide what a caller may see: one query each, no writes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)

    @staticmethod
    def _live(now: float) -> Any:
        return (Grant.ended_at.is_(None)) & (or_(Grant.expires_at.is_(None), Grant.expires_at > now))

    def relation(self, person: str, workspace: str) -> Relation:
        with self.sessions() as session:
            owner = self.records.owner_of(workspace, deleting=False, session=session)
            if owner is None:
                return Relation(False)
            grant = session.execute(
                select(Grant.ssh, Grant.jupyter).where(
                    Grant.workspace == workspace, Grant.person == person, self._live(time.time())
                )
            ).first()
        return Relation(True, owner, bool(grant and grant.ssh), bool(grant and grant.jupyter))

    def workspaces(self, person: str) -> set[str]:
        """The workspaces `person` owns or holds a live grant on."""
        with self.sessions() as session:
            owned = self.records.names_owned_by(person, session=session)
            granted = session.scalars(select(Grant.workspace).where(Grant.person == person, self._live(time.time())))
            return set(owned) | set(granted)

    def visible_clause(self, caller: Caller) -> tuple[str, Select[Any]] | None:
        """`visible` for one query that filters in the store rather than a list of thousands of names: the
        person (who sees what they own) and the names of the workspaces granted to them; None for an admin."""
        if caller.admin:
            return None
        return caller.name, select(Grant.workspace).where(Grant.person == caller.name, self._live(time.time()))

    def visible(self, caller: Caller) -> set[str] | None:
        """The workspaces a caller may see; None for an admin (every one)."""
        return None if caller.admin else self.workspaces(caller.name)

    def snapshot_visible(self, caller: Caller, snapshot_id: str) -> bool:
        with self.sessions() as session:
            row = session.get(Snapshot, snapshot_id)
            if row is None:
                return False
            workspace, owner, made_by = row.workspace, row.owner, row.made_by
        if caller.admin or caller.name in (owner, made_by):
            return True
        return self.relation(caller.name, workspace).granted


def event_visible(
    person: str, names: set[str] | None, workspace: str | None, owner: str | None, kind: str, actor: str
) -> bool:
    """Whether a member sees an event: of a workspace they may see (`names`), of one they owned when it
    happened, one they made themselves, or the daemon's own of TEAM_EVENT_KINDS. From memory only: follow
    streams ask this on the event loop for every event."""
    if owner is not None and owner == person:
        return True
    if workspace is None:
        return kind in TEAM_EVENT_KINDS or actor == person
    return workspace in (names or ())


def _not_found(name: str) -> WorkspaceNotFound:
    return WorkspaceNotFound(f"no workspace named {name!r}", hint="`devenv ls` lists the ones you may see")


def require(visibility: Visibility, actor: Caller, rule: Rule, params: dict[str, Any]) -> None:
    """Raise unless `actor` may call a route declared with `rule` on these path parameters."""
    if rule in (Rule.ANYONE, Rule.MEMBER):
        return
    if rule is Rule.ADMIN:
        if not actor.admin:
            raise Forbidden(
                f"{actor.name} is not an admin of this daemon",
                hint="an admin token (`devenvd token create NAME --admin`) or the daemon's own user can",
            )
        return
    if rule is Rule.SNAPSHOT:
        snapshot_id = str(params.get("snapshot_id", ""))
        if not visibility.snapshot_visible(actor, snapshot_id):
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r}", hint="`devenv snapshots` lists the ones you may see")
        return
    name = str(params.get("name", ""))
    relation = visibility.relation(actor.name, name)
    if not relation.exists:
        raise _not_found(name)
    if relation.owner == actor.name or (actor.admin and rule in (Rule.VIEWER, Rule.OWNER)):
        return  # an admin manages any workspace, but reaches inside one only with a grant (it is recorded)
    if not relation.granted:  # who owns it is not said: that is for those who may see it
        kind = {Rule.SSH: "SSH access", Rule.JUPYTER: "Jupyter access"}.get(rule, "access")
        raise Forbidden(
            f"{actor.name} has no {kind} to workspace {name}",
            hint=f"its owner or an admin can give it: `devenv access grant {name} {actor.name} --ssh`",
        )
    if rule is Rule.VIEWER or (rule is Rule.SSH and relation.ssh) or (rule is Rule.JUPYTER and relation.jupyter):
        return
    if rule is Rule.OWNER:
        raise Forbidden(
            f"only the owner of workspace {name} ({relation.owner}) or an admin can do this; "
            f"{actor.name} holds a grant on it",
            hint=f"ask {relation.owner} or an admin of this daemon",
        )
    what = "SSH access" if rule is Rule.SSH else "Jupyter access"
    raise Forbidden(
        f"{actor.name} has no {what} to workspace {name} (it is {relation.owner}'s)",
        hint=f"its owner ({relation.owner}) can give it: `devenv access grant {name} {actor.name} --{rule.value}`",
    )


class Check:
    """The FastAPI dependency behind `allow(rule)`."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    async def __call__(self, request: Request, actor: Annotated[Caller, Depends(caller)]) -> Caller:
        """On the loop when the rule needs no store (member, admin): a worker thread per dependency was most of
        a listing's cost under load; a workspace rule reads the store on a worker thread."""
        if self.rule in (Rule.ANYONE, Rule.MEMBER, Rule.ADMIN):
            require(request.app.state.visibility, actor, self.rule, {})
        else:
            visibility: Visibility = request.app.state.visibility
            await anyio.to_thread.run_sync(require, visibility, actor, self.rule, dict(request.path_params))
        return actor


def _anyone(request: Request) -> None:
    """No caller needed (the route proves its sender another way, or tells nothing private)."""


def allow(rule: Rule) -> dict[str, Any]:
    """A route's declaration of who may call it: `@router.get(PATH, **allow(Rule.OWNER))`."""
    dependency: Callable[..., Any] = _anyone if rule is Rule.ANYONE else Check(rule)
    return {"dependencies": [Depends(dependency)], "openapi_extra": {ACCESS_KEY: rule.value}}


def route_rule(route: Any) -> Rule | None:
    """The rule a route declared (or that BUILT_IN / PREFIX_RULES declare for it); None when none."""
    path = getattr(route, "path", "")
    if isinstance(route, APIRoute):
        declared = (route.openapi_extra or {}).get(ACCESS_KEY)
        if declared:
            return Rule(declared)
    if path in BUILT_IN:
        return BUILT_IN[path]
    return next((rule for prefix, rule in PREFIX_RULES.items() if path.startswith(prefix)), None)


def every_route(routes: Iterable[Any]) -> Iterator[Route | APIRoute | APIWebSocketRoute]:
    """The app's routes, those of included routers too (FastAPI keeps them as a branch of their own)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from every_route(inner.routes)
        elif isinstance(route, Route | APIRoute | APIWebSocketRoute) and not isinstance(route, Mount):
            yield route


def check_declared(app: FastAPI) -> None:
    """Refuse an app with a route that does not say who may call it, or names a workspace rule without {name}."""
    for route in every_route(app.routes):
        rule = route_rule(route)
        if rule is None:
            raise RuntimeError(f"route {route.path} declares no access rule: add **allow(Rule.…) to it")
        if rule in WORKSPACE_RULES and "{name}" not in route.path and not route.path.startswith("/jupyter/"):
            raise RuntimeError(f"route {route.path} is declared {rule} but has no {{name}} parameter")
        if rule is Rule.SNAPSHOT and "{snapshot_id}" not in route.path:
            raise RuntimeError(f"route {route.path} is declared {rule} but has no {{snapshot_id}} parameter")
