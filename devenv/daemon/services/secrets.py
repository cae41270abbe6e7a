"""Secrets (W&B key, git token, cloud keys): kept by the daemon, encrypted at rest, read back only to start a workspace.

A person's own secrets and the team's share one table. Each value is sealed with Fernet under a key
kept in a file beside the store, never in it, so a copy of the store alone reveals nothing. The
sealed text also names its row (scope, person, name), so a ciphertext moved to another row by
someone who can write the store is refused rather than handed to the wrong person. Values never
leave through answers, events or error messages: only `resolve`, on the workspace start path,
reads them back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from devenv import paths
from devenv.daemon.services.access import Caller
from devenv.daemon.services.events import EventLog
from devenv.daemon.store.tables import Secret
from devenv.errors import Forbidden, SecretKeyError, SecretNotFound, UsageError

KEY_FILENAME = "secrets.key"
KEY_FILE_ENV = "DEVENV_SECRETS_KEY_FILE"
NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")  # as the spec's `secrets:` names (devenv.spec.models)
MAX_NAME = 128
MAX_VALUE = 64 * 1024  # bytes of UTF-8
PERSON, TEAM = "person", "team"


def key_path(home: Path | None = None) -> Path:
    """DEVENV_SECRETS_KEY_FILE, else secrets.key in `home` (default: devenv's home folder)."""
    override = os.environ.get(KEY_FILE_ENV)
    if override:
        return Path(override)
    return (home or paths.home_dir()) / KEY_FILENAME


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise UsageError(
            f"{name[:MAX_NAME]!r} is not a secret name (A-Z, 0-9 and _, not starting with a digit, "
            f"at most {MAX_NAME} characters)",
            hint="use env-var style, like WANDB_API_KEY",
        )
    return name


def check_value(name: str, value: str) -> str:
    """Refuses empty, oversized or NUL-bearing values; the message never quotes the value."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"the value of secret {name} is empty", hint="give the value on stdin or at the prompt")
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > MAX_VALUE:
        raise UsageError(
            f"the value of secret {name} is {size} bytes; at most {MAX_VALUE} are kept",
            hint="keep large credentials (key files, configs) in the project's data, not in a secret",
        )
    if "\0" in value:
        raise UsageError(
            f"the value of secret {name} contains a NUL character",
            hint="a secret becomes an environment variable, which cannot hold one",
        )
    return value


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create_key_file(path: Path) -> None:
    """A new key, mode 0600 from its first byte: written aside, then linked into place in one step."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: 0600, O_EXCL
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(staging, path)  # like os.replace, atomic; unlike it, never clobbers a key made meanwhile
        except FileExistsError:
            pass  # another process made one first: use theirs
        except OSError:  # a filesystem without hard links
            os.replace(staging, path)
        _fsync_folder(path.parent)  # a lost key loses every secret: make its name durable too
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


class SecretBox:
    """Seals and opens values with the key in one file (made on first use, mode 0600; refused if others may read it)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or key_path()
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    @property
    def missing(self) -> bool:
        """No key yet: the first seal will make one."""
        with self._lock:
            return self._fernet is None and not os.path.lexists(self.path)

    def encrypt(self, plaintext: bytes) -> str:
        return self._key().encrypt(plaintext).decode("ascii")

    def decrypt(self, ciphertext: str) -> bytes:
        try:
            return self._key().decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyError(
                f"a stored secret cannot be decrypted with the key in {self.path}: the key file was replaced "
                f"(or lost and made anew) since the secret was set",
                hint=f"restore {self.path} from your backup and restart devenvd, or set the secret again",
            ) from None

    def _key(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(self._load())
            return self._fernet

    def _load(self) -> bytes:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            _create_key_file(self.path)
            info = os.stat(self.path)
        if not stat.S_ISREG(info.st_mode):
            raise SecretKeyError(
                f"the secrets key {self.path} is not a regular file", hint="restore the key file there from your backup"
            )
        if info.st_mode & 0o077:
            raise SecretKeyError(
                f"the secrets key {self.path} may be read or written by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); devenvd will not use it",
                hint=f"chmod 600 {self.path}",
            )
        try:
            key = self.path.read_bytes().strip()
        except OSError as exc:
            raise SecretKeyError(
                f"cannot read the secrets key {self.path}: {exc.strerror}",
                hint="it must belong to the user devenvd runs as",
            ) from exc
        try:
            Fernet(key)
        except ValueError:
            raise SecretKeyError(
                f"{self.path} does not hold a secrets key (32 url-safe base64 bytes)",
                hint="restore it from your backup",
            ) from None
        return key


@dataclass(frozen=True)
class ResolvedSecrets:
    """What a workspace gets: values by name (kept out of repr, so no log line shows them), and names not set."""

    values: dict[str, str] = field(repr=False)
    missing: list[str] = field(default_factory=list)
    personal: list[str] = field(default_factory=list)  # names whose value is the owner's own
    withheld: list[str] = field(default_factory=list)  # the owner's own, left out (shared without them)


def _stamp(moment: dt.datetime) -> float:
    """Unix time of a stored moment (SQLite hands back naive datetimes, which are UTC here)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _item(row: Secret) -> dict[str, Any]:
    return {
        "name": row.name,
        "scope": row.scope,
        "person": row.person or None,
        "updated_at": _stamp(row.updated_at),
        "updated_by": row.updated_by,
    }


def _label(team: bool) -> str:
    return "team" if team else "personal"


class Secrets:
    """Set, list and remove secrets for callers; resolve them for a workspace's owner when it starts."""

    def __init__(self, sessions: sessionmaker[Session], events: EventLog, box: SecretBox) -> None:
        self.sessions = sessions
        self.events = events
        self.box = box

    def _scope(self, caller: Caller, team: bool, verb: str) -> tuple[str, str]:
        if not team:
            return PERSON, caller.name
        if not caller.admin:
            raise Forbidden(
                f"{caller.name} may not {verb} team secrets: only an admin of this daemon may",
                hint="ask an admin, or keep it as your own secret (without --team)",
            )
        return TEAM, ""

    def _seal(self, scope: str, person: str, name: str, value: str) -> str:
        payload = {"scope": scope, "person": person, "name": name, "value": value}
        return self.box.encrypt(json.dumps(payload, separators=(",", ":")).encode())

    def _open(self, row: Secret) -> str:
        payload = json.loads(self.box.decrypt(row.ciphertext))
        if (payload.get("scope"), payload.get("person"), payload.get("name")) != (row.scope, row.person, row.name):
            raise SecretKeyError(
                f"the stored secret {row.name} ({row.scope}) was sealed for another row: the store was edited by hand",
                hint="set the secret again",
            )
        return str(payload["value"])

    def _refuse_a_second_key(self) -> None:
        """A lost key file must not be silently replaced while secrets sealed with it remain."""
        if not self.box.missing:
            return
        with self.sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Secret)) or 0
        if stored:
            raise SecretKeyError(
                f"the secrets key {self.box.path} is missing, and the store holds {stored} "
                f"secret{'s' if stored != 1 else ''} sealed with it",
                hint=f"restore {self.box.path} from your backup; or `devenv secret rm` each "
                f"secret (no key needed), then set them again",
            )

    def set(self, caller: Caller, name: str, value: str, *, team: bool = False) -> dict[str, Any]:
        """Create or replace one secret; answers what `list` shows of it (never the value)."""
        check_name(name)
        check_value(name, value)
        scope, person = self._scope(caller, team, "set")
        self._refuse_a_second_key()
        ciphertext = self._seal(scope, person, name, value)
        for attempt in range(2):  # two first sets at once: the loser updates the winner's row
            now = dt.datetime.now(dt.UTC)
            try:
                with self.sessions.begin() as session:
                    row = session.scalars(
                        select(Secret).where(Secret.scope == scope, Secret.person == person, Secret.name == name)
                    ).one_or_none()
                    if row is None:
                        row = Secret(name=name, scope=scope, person=person, created_at=now)
                        session.add(row)
                    row.ciphertext, row.updated_by, row.updated_at = ciphertext, caller.name, now
                    session.flush()
                    item = _item(row)
                break
            except IntegrityError:
                if attempt:
                    raise
        self.events.record(None, "api", f"secret set {name} ({_label(team)})", actor=caller.name)
        return item

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's own secrets and the team's, by name; names and who set them, never values."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Secret)
                .where(
                    or_(
                        Secret.scope == TEAM,
                        (Secret.scope == PERSON) & (Secret.person == caller.name),
                    )
                )
                .order_by(Secret.name, Secret.scope)
            ).all()
            return [_item(row) for row in rows]

    def remove(self, caller: Caller, name: str, *, team: bool = False) -> None:
        check_name(name)
        scope, person = self._scope(caller, team, "remove")
        with self.sessions.begin() as session:
            row = session.scalars(
                select(Secret).where(Secret.scope == scope, Secret.person == person, Secret.name == name)
            ).one_or_none()
            if row is None:
                other = "" if team else " (a team secret needs --team)"
                raise SecretNotFound(
                    f"no {_label(team)} secret named {name}{other}",
                    hint="`devenv secret ls` lists yours and the team's",
                )
            session.delete(row)
        self.events.record(None, "api", f"secret removed {name} ({_label(team)})", actor=caller.name)

    def resolve(self, owner: str, names: Iterable[str], *, personal: bool = True) -> ResolvedSecrets:
        """The values a workspace of `owner` gets: their own secret of each name first, else the team's.

        `personal=False` (the workspace is shared without --share-secrets): the team's only; the
        owner's own are named in `withheld`, never opened.
        """
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return ResolvedSecrets({}, [])
        with self.sessions() as session:
            rows = session.scalars(
                select(Secret).where(
                    Secret.name.in_(wanted),
                    or_(
                        Secret.scope == TEAM,
                        (Secret.scope == PERSON) & (Secret.person == owner),
                    ),
                )
            ).all()
            found = {(row.scope, row.name): row for row in rows}
            values: dict[str, str] = {}
            missing: list[str] = []
            own: list[str] = []
            withheld = [name for name in wanted if not personal and (PERSON, name) in found]
            for name in wanted:
                row = (found.get((PERSON, name)) if personal else None) or found.get((TEAM, name))
                if row is None:
                    missing.append(name)
                else:
                    values[name] = self._open(row)
                    own += [name] if row.scope == PERSON else []
        return ResolvedSecrets(values, missing, own, withheld)
