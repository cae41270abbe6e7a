"""Who may reach a workspace, and making a change of that felt at once.

The owner always may. Others hold a grant (SSH, Jupyter or both, optionally with a TTL) that the
owner or an admin gives and takes back. The daemon is an SSH certificate authority: a workspace's
sshd trusts the CA's key, lets in only the principals listed for it, and reads a revocation list
at each login; certificates are short-lived and name the person as key id and principal, so a log
line says who logged in. Everyone works as uid `dev` there; a grantee carries a marker group
(devenv/access/markers.py), under a login of their own over SSH, and in their exec and their own
JupyterLab. Ending a grant (revoke or TTL) rewrites those files in the running container, tells
the Jupyter proxy to drop their sessions and websockets, and has the workspace's access tool close
their SSH connections and kill every process holding their marker; nobody else's are touched.
This module decides who may and keeps the grants; grant_table.py reads them, and access_container.py
writes those files and runs those sweeps.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devenv.access.markers import OWNER_LOGIN, Marker, person_jupyter_secret
from devenv.access.ssh_ca import SshCertificateAuthority
from devenv.daemon.services.access_container import ContainerAccess, host_name
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.grant_table import grant_json, live_grants, markers
from devenv.daemon.store import states
from devenv.daemon.store.tables import Grant, Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import Forbidden, UsageError, WorkspaceNotFound

log = logging.getLogger("devenvd.access")

PERSON_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}")
KINDS = ("ssh", "jupyter")


def check_person(name: str) -> str:
    if not PERSON_RE.fullmatch(name):
        raise UsageError(
            f"person {name!r}: letters, digits and _.@+- only, starting with a letter, digit or _",
            hint="a person is named as their token is (`devenvd token create NAME`)",
        )
    return name


def parse_ttl(text: str) -> float:
    """'90s', '30m', '4h', '2d' -> seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not found or float(found[1]) <= 0:
        raise UsageError(f"--ttl {text!r}: expected a positive duration like 90s, 30m, 4h or 2d")
    return float(found[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[found[2]]


@dataclass(frozen=True)
class Caller:
    """Who is asking, and whether they may manage every workspace (the daemon's own user, admin tokens)."""

    name: str
    admin: bool = False


class Access:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        ca: SshCertificateAuthority,
        events: EventLog,
        backends: Backends,
        key_path: Path,
        *,
        certificate_ttl: float = 3600,
    ) -> None:
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.ca = ca
        self.host_ca = SshCertificateAuthority(ca.folder / "hosts")  # apart: a user CA never vouches for hosts
        self.events = events
        self.backends = backends
        self.certificate_ttl = certificate_ttl
        self.on_end: list[Callable[[str, str], None]] = []  # (workspace, person): the Jupyter proxy listens
        self.container = ContainerAccess(
            sessions, self.records, ca, self.host_ca, events, backends, key_path, allowed=self.allowed
        )

    # -- who may ---------------------------------------------------------------------------------

    def _workspace(self, session: Session, name: str) -> Workspace:
        ws = self.records.get(name, session=session)
        if ws is None or ws.desired == states.DESIRE_DELETED:
            raise WorkspaceNotFound(f"no workspace named {name!r}", hint="`devenv ls` lists them")
        return ws

    def _live_grants(self, session: Session, workspace: str, now: float | None = None) -> list[Grant]:
        return live_grants(session, workspace, now)

    def marker(self, workspace: str, person: str) -> Marker:
        with self.sessions() as session:
            return markers(session, workspace)[person]

    def allowed(self, person: str, workspace: str, kind: str) -> bool:
        """Whether `person` may reach `workspace` by `kind` (ssh | jupyter) right now."""
        with self.sessions() as session:
            ws = self.records.get(workspace, session=session)
            if ws is None:
                return False
            if ws.owner == person:
                return True
            return any(row.person == person and getattr(row, kind) for row in self._live_grants(session, workspace))

    def require(self, caller: Caller, workspace: str, kind: str) -> None:
        if not self.allowed(caller.name, workspace, kind):
            with self.sessions() as session:
                owner = self._workspace(session, workspace).owner
            raise Forbidden(
                f"{caller.name} has no {'SSH' if kind == 'ssh' else 'Jupyter'} access to workspace {workspace}",
                hint=f"its owner ({owner}) can give it: `devenv access grant {workspace} {caller.name} --{kind}`",
            )

    def require_owner(self, caller: Caller, workspace: str, verb: str) -> None:
        """Changing a workspace's life (stop, rm, rebuild, up over it) is its owner's, or an admin's.

        Starting is also open to anyone with a grant, so a teammate can wake a workspace that
        stopped while idle.
        """
        with self.sessions() as session:
            ws = self.records.get(workspace, session=session)
            if ws is None or caller.admin or ws.owner == caller.name:
                return
            if verb == "start" and any(row.person == caller.name for row in self._live_grants(session, workspace)):
                return
            owner = ws.owner
        raise Forbidden(
            f"{caller.name} may not {verb} workspace {workspace}: it is {owner}'s",
            hint="ask its owner, or an admin of this daemon",
        )

    def _require_manager(self, caller: Caller, ws: Workspace) -> None:
        if not (caller.admin or caller.name == ws.owner):
            raise Forbidden(
                f"only the owner of workspace {ws.name} ({ws.owner}) or an admin can change who reaches it",
                hint="ask them, or an admin of this daemon",
            )

    # -- grants ----------------------------------------------------------------------------------

    def grant(
        self,
        caller: Caller,
        workspace: str,
        person: str,
        *,
        ssh: bool,
        jupyter: bool,
        ttl: float | None,
        share_secrets: bool = False,
    ) -> dict[str, Any]:
        """Give (or change) a grant. Kinds it no longer has end at once; without `share_secrets` the
        owner's personal secrets leave a running workspace at once, and stay out while it is shared."""
        check_person(person)
        if not (ssh or jupyter):
            raise UsageError("say what to grant: --ssh, --jupyter or both")
        with self.sessions.begin() as session:
            ws = self._workspace(session, workspace)
            self._require_manager(caller, ws)
            if person == ws.owner:
                raise UsageError(f"{person} owns workspace {workspace} and always has access")
            row = session.scalars(
                select(Grant).where(Grant.workspace == workspace, Grant.person == person)
            ).one_or_none()
            if row is None:
                row = Grant(workspace=workspace, person=person)
                session.add(row)
            live = row.ended_at is None and (row.expires_at is None or row.expires_at > time.time())
            dropped = {
                kind
                for kind, had, has in (("ssh", row.ssh, ssh), ("jupyter", row.jupyter, jupyter))
                if live and had and not has
            }
            row.ssh, row.jupyter = ssh, jupyter
            row.share_secrets = share_secrets
            row.expires_at = time.time() + ttl if ttl else None
            row.granted_by, row.granted_at = caller.name, dt.datetime.now(dt.UTC)
            row.ended_at = row.ended_by = None
            session.flush()
            result = grant_json(row)
        what = " and ".join(kind for kind in KINDS if result[kind])
        until = (
            f" until {dt.datetime.fromtimestamp(result['expires_at'], dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
            if result["expires_at"]
            else ""
        )
        shared = " with the owner's personal secrets" if share_secrets else ""
        self.events.record(workspace, "access", f"granted {what} to {person}{until}{shared}", actor=caller.name)
        if not jupyter:
            self._notify_end(workspace, person)
        self.apply(workspace, ended={person: dropped} if dropped else {}, withhold=not share_secrets)
        return result

    def revoke(self, caller: Caller, workspace: str, person: str) -> dict[str, Any]:
        with self.sessions.begin() as session:
            ws = self._workspace(session, workspace)
            self._require_manager(caller, ws)
            if person == ws.owner:
                raise UsageError(
                    f"{person} owns workspace {workspace}; an owner's access cannot be revoked",
                    hint="`devenv rm` the workspace, or have it recreated by someone else",
                )
            row = session.scalars(
                select(Grant).where(Grant.workspace == workspace, Grant.person == person, Grant.ended_at.is_(None))
            ).one_or_none()
            if row is None:
                raise UsageError(
                    f"{person} holds no grant on workspace {workspace}",
                    hint=f"`devenv access ls {workspace}` shows who does",
                )
            row.ended_at, row.ended_by = dt.datetime.now(dt.UTC), caller.name
            session.flush()
            result = grant_json(row)
        self.events.record(workspace, "access", f"revoked {person}'s access", actor=caller.name)
        self.end(workspace, person, [kind for kind in KINDS if result[kind]])
        return result

    def list(self, caller: Caller, workspace: str, *, ended: bool = False) -> dict[str, Any]:
        with self.sessions() as session:
            ws = self._workspace(session, workspace)
            if not (
                caller.admin
                or caller.name == ws.owner
                or any(row.person == caller.name for row in self._live_grants(session, workspace))
            ):
                raise Forbidden(
                    f"{caller.name} has no access to workspace {workspace}, so may not see who has",
                    hint=f"its owner ({ws.owner}) or an admin can",
                )
            rows = session.scalars(select(Grant).where(Grant.workspace == workspace).order_by(Grant.person))
            now = time.time()
            items = [
                grant_json(row)
                for row in rows
                if ended or (row.ended_at is None and (row.expires_at is None or row.expires_at > now))
            ]
            return {"workspace": workspace, "owner": ws.owner, "grants": items}

    def expire(self) -> int:
        """End grants whose TTL has passed (the access loop calls this every few seconds)."""
        now = time.time()
        with self.sessions.begin() as session:
            due = session.scalars(
                select(Grant).where(Grant.ended_at.is_(None), Grant.expires_at.is_not(None), Grant.expires_at <= now)
            ).all()
            for row in due:
                row.ended_at, row.ended_by = dt.datetime.now(dt.UTC), "expired"
            ended = [(row.workspace, row.person, [kind for kind in KINDS if getattr(row, kind)]) for row in due]
        for workspace, person, kinds in ended:
            self.events.record(workspace, "access", f"{person}'s grant expired", actor="devenvd")
            self.end(workspace, person, kinds)
        return len(ended)

    def forget(self, workspace: str) -> None:
        """A deleted workspace takes its grants with it (a new one of that name starts clean)."""
        with self.sessions.begin() as session:
            for row in session.scalars(select(Grant).where(Grant.workspace == workspace)):
                session.delete(row)

    # -- making it so ----------------------------------------------------------------------------

    def end(self, workspace: str, person: str, kinds: Collection[str] = KINDS) -> None:
        """Cut `person` off `workspace` now: sshd's files, their Jupyter sessions, every process they started."""
        self._notify_end(workspace, person)
        self.apply(workspace, ended={person: set(kinds)})

    def _notify_end(self, workspace: str, person: str) -> None:
        for listener in self.on_end:
            try:
                listener(workspace, person)
            except Exception:  # one broken listener must not keep a revoke from the others
                log.exception("access listener failed for %s on %s", person, workspace)

    def apply(
        self, workspace: str, ended: Mapping[str, Collection[str]] | None = None, *, withhold: bool = False
    ) -> None:
        """Make a running workspace's access match the grants (see ContainerAccess.apply)."""
        self.container.apply(workspace, ended, withhold=withhold)

    def workspace_files(self, ws: Workspace, *, host_keys: bool = True) -> dict[str, bytes]:
        return self.container.workspace_files(ws, host_keys=host_keys)

    def jupyter_secret(self, workspace: str) -> str:
        return self.container.jupyter_secret(workspace)

    def person_jupyter_secret(self, workspace: str, person: str) -> str:
        """The secret of `person`'s own JupyterLab in `workspace` (see markers.person_jupyter_secret)."""
        return person_jupyter_secret(self.jupyter_secret(workspace), self.marker(workspace, person))

    def certificate(self, caller: Caller, workspace: str, public_key: str) -> dict[str, Any]:
        """A short-lived certificate for the caller's key, if the caller may reach the workspace by SSH."""
        self.require(caller, workspace, "ssh")
        check_person(caller.name)
        with self.sessions() as session:
            ws = self._workspace(session, workspace)
            port = ws.ssh_port
            login = OWNER_LOGIN if ws.owner == caller.name else markers(session, workspace)[caller.name].login
            grant_ends = [
                row.expires_at
                for row in self._live_grants(session, workspace)
                if row.person == caller.name and row.expires_at is not None and ws.owner != caller.name
            ]
        valid_for = self.certificate_ttl
        if grant_ends:  # never outlive the grant: sshd itself then refuses it after the TTL
            left = min(grant_ends) - time.time()
            if left < 1.0:
                raise Forbidden(f"{caller.name}'s access to workspace {workspace} ends now")
            valid_for = min(valid_for, left)
        serial = time.time_ns()  # unique and increasing: revocation lists name certificates by serial
        cert = self.ca.ensure().sign(
            public_key,
            key_id=caller.name,
            principals=[caller.name],
            serial=serial,
            valid_for=dt.timedelta(seconds=valid_for),
        )
        self.events.record(
            workspace,
            "access",
            f"SSH certificate for {caller.name} (serial {serial}, valid until "
            f"{cert.valid_before:%Y-%m-%d %H:%M:%S} UTC)",
            actor=caller.name,
        )
        return {
            "certificate": cert.text,
            "principal": caller.name,
            "serial": serial,
            "valid_before": cert.valid_before.timestamp(),
            "user": login,
            "host": "127.0.0.1",
            "port": port,
            "host_name": host_name(workspace),
            "host_ca": self.host_ca.ensure().public_key,
        }
