"""Docker hosts over SSH: added by an admin, kept in the store (key sealed), each a backend by name.

`add` connects before it records anything: the host key must be pinned already or confirmed by its
fingerprint (`trust`), the key must log in, and a Docker engine must answer there; a failed add
leaves nothing behind. `facts` probes hosts in parallel for `devenv host ls` and `--on auto`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import HostFacts, HostInspectable, Provisioner
from devenv.backends.docker import DockerBackend
from devenv.backends.ssh.known_hosts import KnownHosts
from devenv.backends.ssh.session import SshSession, load_private_key
from devenv.backends.ssh.target import parse_target
from devenv.daemon.services.access import Caller
from devenv.daemon.services.backends import BackendEntry, Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.secrets import SecretBox
from devenv.daemon.store.tables import Host
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import DevenvError, EngineUnreachable, FileExists, Forbidden, HostNotFound, UsageError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RESERVED = {"auto", "aws"}  # `--on auto` places; `aws` provisions
PROBE_TIMEOUT = 20.0


def _require_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise Forbidden(
            f"only an admin of this daemon can {what}", hint="ask an admin (`devenv whoami` says who you are)"
        )


class Hosts:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backends: Backends,
        box: SecretBox,
        known_hosts: KnownHosts,
        events: EventLog,
    ) -> None:
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.backends = backends
        self.box = box
        self.known_hosts = known_hosts
        self.events = events

    def load(self) -> None:
        """Every stored host becomes a backend; none is contacted until used."""
        with self.sessions() as session:
            rows = session.scalars(select(Host)).all()
        for row in rows:
            try:
                key = load_private_key(self.box.decrypt(row.identity).decode(), source=f"host {row.name}'s key")
                backend = DockerBackend(row.name, session=SshSession(parse_target(row.url), key, self.known_hosts))
                self.backends.add(BackendEntry(row.name, "docker", row.url, backend))
            except DevenvError as error:  # a lost secrets key: listed with the reason
                self.backends.add(BackendEntry(row.name, "docker", row.url, None, error.render()))

    # -- changing ------------------------------------------------------------------------------

    def add(self, caller: Caller, name: str, url: str, identity: str, *, trust: str | None = None) -> dict[str, Any]:
        _require_admin(caller, "add hosts")
        if not _NAME_RE.fullmatch(name) or name in RESERVED:
            raise UsageError(
                f"host name {name!r}: use lowercase letters, digits and dashes (at most 63), "
                f"not {' or '.join(sorted(RESERVED))}"
            )
        if name in self.backends.entries:
            raise FileExists(
                f"there is a backend named {name} already", hint=f"`devenv host rm {name}` first, or pick another name"
            )
        target = parse_target(url)
        key = load_private_key(identity, source="the identity")
        session = SshSession(target, key, self.known_hosts)
        backend = DockerBackend(name, session=session)
        try:
            session.transport(trust=trust)  # the host key, pinned or confirmed, then the login
            self._check_engine(backend)
            facts = backend.facts()
        except DevenvError:
            backend.close()
            raise
        public = f"{key.get_name()} {key.get_base64()}"
        with self.sessions.begin() as db:
            if db.scalars(select(Host.id).where(Host.name == name)).first() is not None:
                backend.close()
                raise FileExists(f"there is a host named {name} already")
            db.add(
                Host(
                    name=name,
                    url=target.url,
                    kind="ssh",
                    identity=self.box.encrypt(identity.encode()),
                    public_key=public,
                    added_by=caller.name,
                )
            )
        self.backends.add(BackendEntry(name, "docker", target.url, backend))
        self.events.record(
            None,
            "host",
            f"host {name} added ({target.url}, Docker {facts.engine_version}, {len(facts.gpus)} GPU(s))",
            actor=caller.name,
        )
        return {"name": name, "url": target.url, "facts": _facts_json(facts)}

    def _check_engine(self, backend: DockerBackend) -> None:
        """A Docker engine answers on the host: else say why (no docker, no access to its socket)."""
        try:
            backend.ping()
        except EngineUnreachable as error:
            assert backend.session is not None
            probe = backend.session.run("docker version --format '{{.Server.Version}}' 2>&1")
            user = backend.session.target.user
            if probe.exit_code == 127:
                raise EngineUnreachable(
                    f"{backend.url}: the docker CLI is not installed on the host",
                    hint="install Docker Engine there (it carries `docker system dial-stdio`)",
                ) from error
            if "permission denied" in probe.stdout.lower():
                raise EngineUnreachable(
                    f"{backend.url}: {user} may not use the host's Docker engine",
                    hint=f"on the host: `sudo usermod -aG docker {user}`, then log in again",
                ) from error
            raise EngineUnreachable(
                f"{backend.url}: the Docker engine there does not answer "
                f"({probe.stdout.strip()[-300:] or error.message})",
                hint="start Docker on the host (`sudo systemctl start docker`)",
            ) from error

    def remove(self, caller: Caller, name: str) -> dict[str, Any]:
        _require_admin(caller, "remove hosts")
        with self.sessions.begin() as db:
            row = db.scalars(select(Host).where(Host.name == name)).one_or_none()
            if row is None:
                raise HostNotFound(f"no host named {name!r}", hint="`devenv host ls` lists them")
            left = [ws.name for ws in self.records.on_backend(name, session=db)]
            if left:
                raise UsageError(
                    f"host {name} still has workspaces: {', '.join(sorted(left))}",
                    hint="`devenv rm` them first (their homes live on that host)",
                )
            url = row.url
            db.delete(row)
        entry = self.backends.remove(name)
        if entry is not None and isinstance(entry.backend, DockerBackend):
            entry.backend.close()
        forgotten = self.known_hosts.forget(parse_target(url))
        self.events.record(
            None, "host", f"host {name} removed ({url}; {forgotten} pinned key(s) forgotten)", actor=caller.name
        )
        return {"removed": name}

    # -- reading -------------------------------------------------------------------------------

    def list(self, *, probe: bool = True) -> list[dict[str, Any]]:
        """Every backend with its facts: hosts added here, and the daemon's configured engines."""
        with self.sessions() as session:
            added = {row.name: row for row in session.scalars(select(Host)).all()}
        counts = self.records.count_by_backend()
        entries = list(self.backends.entries.values())
        probed = self.facts([entry.name for entry in entries]) if probe else {}
        rows = []
        for entry in entries:
            row = added.get(entry.name)
            facts, error = probed.get(entry.name, (None, entry.error))
            rows.append(
                {
                    "name": entry.name,
                    "url": entry.url or getattr(entry.backend, "url", None),
                    "kind": row.kind if row else entry.type,
                    "added_by": row.added_by if row else None,
                    "reachable": facts is not None,
                    "error": error,
                    "workspaces": int(counts.get(entry.name, 0)),
                    "facts": _facts_json(facts) if facts else None,
                    "public_key": row.public_key if row else None,
                }
            )
            machines = getattr(entry.backend, "machines", None) if probe else None
            if machines is not None:  # a provisioner's instances, one per workspace
                try:
                    found = machines()
                except DevenvError as failure:
                    rows[-1]["error"] = failure.message
                    found = []
                for machine in found:
                    facts = machine.pop("facts")
                    rows.append(
                        {
                            **machine,
                            "added_by": None,
                            "public_key": None,
                            "reachable": facts is not None,
                            "workspaces": 1,
                            "facts": _facts_json(facts) if facts else None,
                        }
                    )
        return rows

    def facts(self, names: Sequence[str]) -> dict[str, tuple[HostFacts | None, str | None]]:
        """Probe the named backends in parallel; each answer (facts, None) or (None, why not)."""

        def one(name: str) -> tuple[HostFacts | None, str | None]:
            entry = self.backends.entries.get(name)
            if entry is None or entry.backend is None:
                return None, entry.error if entry else "no such backend"
            if isinstance(entry.backend, Provisioner):
                return None, "a machine per workspace, made when one starts (`devenv ls` shows them)"
            if not isinstance(entry.backend, HostInspectable):
                return None, "this backend cannot describe its machine"
            started = time.monotonic()
            try:
                return entry.backend.facts(), None
            except DevenvError as error:
                return None, f"{error.message} (after {time.monotonic() - started:.1f}s)"

        if not names:
            return {}
        with ThreadPoolExecutor(min(8, len(names)), thread_name_prefix="probe") as pool:
            return dict(zip(names, pool.map(one, names), strict=True))


def _facts_json(facts: HostFacts) -> dict[str, Any]:
    data = asdict(facts)
    data["free_gpus"] = len(facts.free_gpus)
    return data
