"""Access made so inside a running workspace: the files its sshd and JupyterLab read, and the sweeps
that cut a person off.

Apart from who may (access.py), because this side speaks to the container through its backend: it
writes the CA key, the principals, the logins, the revocation list, Jupyter's secret and the host key,
and runs the workspace's access tool (end-sessions) as root to sync logins and end what a grant lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devenv.access.keys import jupyter_secret, load_or_make_key
from devenv.access.markers import logins_file
from devenv.access.ssh_ca import SshCertificateAuthority
from devenv.backends.base import Handle
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.grant_table import live_grants, markers
from devenv.daemon.store import states
from devenv.daemon.store.tables import Grant, Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import DevenvError

log = logging.getLogger("devenvd.access")

SSH_DIR = "/etc/devenv/ssh"
JUPYTER_SECRET_PATH = "/etc/devenv/jupyter/secret"
END_SESSIONS = ["/usr/bin/python3", "-I", "/opt/devenv/bin/end-sessions"]  # run as root: -I, deaf to its env


def host_name(workspace: str) -> str:
    """The name a workspace's sshd proves with its host certificate, and the one ssh-config uses."""
    return f"{workspace}.devenv"


class ContainerAccess:
    """What a workspace's container is told about access; `allowed(person, workspace, kind)` is asked
    again before each sweep, so someone granted again in the meantime is spared."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        records: WorkspaceRecords,
        ca: SshCertificateAuthority,
        host_ca: SshCertificateAuthority,
        events: EventLog,
        backends: Backends,
        key_path: Path,
        allowed: Callable[[str, str, str], bool],
    ) -> None:
        self.sessions = sessions
        self.records = records
        self.ca = ca
        self.host_ca = host_ca
        self.events = events
        self.backends = backends
        self.key_path = key_path
        self.allowed = allowed
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def principals(self, ws: Workspace) -> list[str]:
        with self.sessions() as session:
            granted = sorted(row.person for row in live_grants(session, ws.name) if row.ssh)
        return [ws.owner, *[person for person in granted if person != ws.owner]]

    def _revoked_ids(self, ws: Workspace, principals: list[str]) -> list[str]:
        with self.sessions() as session:
            rows = session.scalars(select(Grant).where(Grant.workspace == ws.name))
            ended = {
                row.person
                for row in rows
                if row.ended_at is not None or (row.expires_at is not None and row.expires_at <= time.time())
            }
        return sorted(ended - set(principals))

    def apply(
        self, workspace: str, ended: Mapping[str, Collection[str]] | None = None, *, withhold: bool = False
    ) -> None:
        """Rewrite a running workspace's access files, make its logins match, and end what `ended`
        (person -> kinds) lost: SSH connections, and every process holding that kind's marker.

        Files first, so no new login gets through; the sweep runs again a second later for a login or
        an exec that was past its checks while the files changed. `withhold`: take the owner's personal
        secrets out now (someone holds a grant without them). A stopped workspace gets its files when it
        next starts.
        """
        with self.sessions() as session:
            ws = self.records.get(workspace, session=session)
            if ws is None or not states.container_up(ws.state, ws.error_code):
                return
            session.expunge(ws)
        ending = {person: set(kinds) for person, kinds in (ended or {}).items() if kinds}
        personal: list[str] = []
        if withhold:
            from devenv.daemon.services.setup import placed_personal  # setup needs access.py: imported late

            personal = placed_personal(self.sessions, ws)
        try:
            backend = self.backends.get(ws.backend)
            handle = Handle.for_workspace(ws.name)
            backend.put_files(handle, self.workspace_files(ws, host_keys=False))
            self._run_tool(backend, handle, ws.name, ending, personal)
            if ending:
                threading.Timer(1.0, self._run_tool, (backend, handle, ws.name, ending, [])).start()
        except DevenvError as error:
            log.warning("could not update access in %s: %s", workspace, error.render())
            self.events.record(
                workspace, "access", f"could not update access in the container: {error}", actor="devenvd"
            )
            return
        if personal:
            from devenv.daemon.services.setup import record_withheld

            record_withheld(self.sessions, self.events, ws.name, personal)

    def _run_tool(
        self, backend: Any, handle: Handle, workspace: str, ended: dict[str, set[str]], secrets_out: Sequence[str]
    ) -> None:
        """end-sessions as root: logins synced, then the ended people's connections and processes."""
        with self.sessions() as session:
            known = markers(session, workspace)
        argv, people = [*END_SESSIONS, "--sync"], []
        for person, kinds in sorted(ended.items()):
            kinds = {kind for kind in kinds if not self.allowed(person, workspace, kind)}  # granted again since?
            marker = known.get(person)
            if not kinds or marker is None:
                continue
            people.append(person)
            argv += ["--kill-gid", str(marker.gid)] if "ssh" in kinds else []
            argv += ["--kill-gid", str(marker.jupyter_gid)] if "jupyter" in kinds else []
        for name in secrets_out:
            argv += ["--drop-secret", name]
        if not people and ended:  # the second sweep, for people granted again in the meantime
            return
        try:
            stream = backend.exec(handle, [*argv, *people], user="root", workdir="/")
            output = b"".join(chunk for _, chunk in stream).decode(errors="replace").strip()
        except DevenvError as error:
            log.warning("could not end sessions in %s: %s", workspace, error.render())
            return
        if stream.exit_code != 0:
            log.warning("end-sessions in %s exited %s: %s", workspace, stream.exit_code, output)
        elif output:
            self.events.record(workspace, "access", output, actor="devenvd")

    def workspace_files(self, ws: Workspace, *, host_keys: bool = True) -> dict[str, bytes]:
        """What a workspace reads: the CA key, who may log in as whom, what is revoked, Jupyter's secret
        (in a folder only root may enter), and (placed before each start; sshd reads them only then) a
        new host key with its certificate."""
        principals = self.principals(ws)
        ca = self.ca.ensure()
        with self.sessions() as session:
            known = markers(session, ws.name)
            live = [
                (known[row.person], row.ssh, row.jupyter)
                for row in live_grants(session, ws.name)
                if row.person != ws.owner
            ]
        files = {
            f"{SSH_DIR}/ca.pub": (ca.public_key + "\n").encode(),
            f"{SSH_DIR}/principals": f"{ws.owner}\n".encode(),  # as `dev`: the owner only
            f"{SSH_DIR}/logins": logins_file(ws.owner, sorted(live, key=lambda item: item[0].gid)),
            f"{SSH_DIR}/revoked.krl": ca.revocation_list(key_ids=self._revoked_ids(ws, principals)),
            JUPYTER_SECRET_PATH: (self.jupyter_secret(ws.name) + "\n").encode(),
        }
        if host_keys:
            host = self.host_ca.ensure().host_keys(host_name(ws.name))
            files.update({f"{SSH_DIR}/{name}": data for name, data in host.items()})
        return files

    def jupyter_secret(self, workspace: str) -> str:
        """JupyterLab's internal secret for a workspace: derived from the daemon's key, never stored."""
        with self._lock:
            if self._key is None:
                self._key = load_or_make_key(self.key_path)
            key = self._key
        return jupyter_secret(key, workspace)
