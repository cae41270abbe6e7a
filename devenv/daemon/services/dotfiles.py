"""Each person's dotfiles repository (`devenv dotfiles set URL`), as Codespaces and Coder keep it: set
once, cloned into every workspace the person owns (the clone itself is dotfiles_step's).

What is kept is checked here, where it enters: a URL a workspace can clone from (https, http, ssh,
git, or scp-like `git@host:path`), never one carrying a password or token (it would sit in the store
and in ~/.dotfiles/.git/config; a public repository needs none), and an install script that is a
relative path inside the repository. A refusal names the field (`url`, `install`) and never echoes
a credential.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from devenv.daemon.services.access import Caller
from devenv.daemon.services.events import EventLog
from devenv.daemon.store.tables import Dotfiles
from devenv.errors import UsageError

MAX_URL = 2048
MAX_INSTALL = 255
SCHEMES = ("https", "http", "ssh", "git", "git+ssh", "ssh+git")
SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
_SCP_RE = re.compile(r"(?:[A-Za-z0-9._~+-]+@)?(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<path>[^/].*)")
_URL_HINT = "give the repository's clone URL, like https://github.com/you/dotfiles.git"
_SSH_NOTE = (
    "an ssh URL is not cloned when a workspace starts (your forwarded agent is there only while you "
    "are connected): use the https URL of a public repository"
)


@dataclass(frozen=True)
class DotfilesRepo:
    """One person's setting, as the clone step needs it."""

    url: str
    install: str | None

    @property
    def over_ssh(self) -> bool:
        return is_ssh(self.url)


def is_ssh(url: str) -> bool:
    """Whether cloning `url` needs ssh (an ssh:// URL or scp-like `git@host:path`)."""
    if "://" in url:
        return url.split("://", 1)[0].lower() in SSH_SCHEMES
    return _SCP_RE.fullmatch(url) is not None


def _refuse(field: str, message: str, hint: str) -> UsageError:
    return UsageError(f"dotfiles {field}: {message}", hint=hint, data={"field": field})


def _printable(text: str) -> bool:
    return text.isprintable() and not any(char.isspace() for char in text)


def check_url(url: object) -> str:
    """The URL, stripped, when a workspace could clone it with no credentials stored; else UsageError."""
    if not isinstance(url, str) or not url.strip():
        raise _refuse("url", "is empty", _URL_HINT)
    url = url.strip()
    if len(url) > MAX_URL:
        raise _refuse("url", f"is {len(url)} characters long; at most {MAX_URL} are kept", _URL_HINT)
    if not _printable(url):
        raise _refuse("url", "holds spaces or control characters", _URL_HINT)
    if url.startswith("-"):
        raise _refuse("url", "starts with '-'", _URL_HINT)
    if "://" not in url:
        if url.startswith(("/", ".", "~")) or not _SCP_RE.fullmatch(url):
            raise _refuse(
                "url",
                f"{url[:200]!r} is not a clone URL (a path on this machine is not reachable from a workspace)",
                _URL_HINT,
            )
        return url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise _refuse(
            "url",
            f"the scheme {scheme[:20]!r} is not one a workspace clones from (use {', '.join(SCHEMES[:4])})",
            _URL_HINT,
        )
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise _refuse("url", "is not a well-formed URL (its host or port cannot be read)", _URL_HINT) from None
    if parts.password or (parts.username and scheme in ("https", "http")):
        raise _refuse(
            "url",
            "the URL holds a user name, password or token, which would be stored and written "
            "into ~/.dotfiles/.git/config",
            "use the plain https URL of a public repository",
        )
    if not host:
        raise _refuse("url", "the URL names no host", _URL_HINT)
    if parts.path.strip("/") == "":
        raise _refuse("url", "the URL names no repository (its path is empty)", _URL_HINT)
    return url


def check_install(install: object) -> str | None:
    """The install script as a clean relative path inside the repository (None: found by name); else UsageError."""
    if install is None:
        return None
    hint = "name the script relative to the repository's top, like install.sh or script/setup"
    if not isinstance(install, str) or not install.strip():
        raise _refuse("install", "is empty", hint)
    install = install.strip()
    if len(install) > MAX_INSTALL:
        raise _refuse("install", f"is {len(install)} characters long; at most {MAX_INSTALL}", hint)
    if not install.isprintable() or "\\" in install:
        raise _refuse("install", "holds control characters or backslashes", hint)
    path = PurePosixPath(install)
    if path.is_absolute() or ".." in path.parts:
        raise _refuse("install", f"{install!r} is not inside the repository (absolute, or with '..')", hint)
    if str(path) in ("", ".") or install.endswith("/"):
        raise _refuse("install", f"{install!r} names a folder, not a script", hint)
    return str(path)


def _stamp(moment: dt.datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def lookup(sessions: sessionmaker[Session], person: str) -> DotfilesRepo | None:
    """`person`'s dotfiles repository, or None when they set none."""
    with sessions() as session:
        row = session.get(Dotfiles, person)
        return None if row is None else DotfilesRepo(row.url, row.install)


class DotfilesService:
    """Show, set and remove the caller's own setting: one per person, seen by no one else."""

    def __init__(self, sessions: sessionmaker[Session], events: EventLog) -> None:
        self.sessions = sessions
        self.events = events

    def get(self, caller: Caller) -> dict[str, Any]:
        with self.sessions() as session:
            row = session.get(Dotfiles, caller.name)
            if row is None:
                return {"url": None, "install": None, "updated_at": None, "note": None}
            return {
                "url": row.url,
                "install": row.install,
                "updated_at": _stamp(row.updated_at),
                "note": _SSH_NOTE if is_ssh(row.url) else None,
            }

    def set(self, caller: Caller, url: object, install: object = None) -> dict[str, Any]:
        url, script = check_url(url), check_install(install)
        with self.sessions.begin() as session:
            row = session.get(Dotfiles, caller.name)
            if row is None:
                session.add(Dotfiles(person=caller.name, url=url, install=script))
            else:
                row.url, row.install = url, script
                row.updated_at = dt.datetime.now(dt.UTC)
        self.events.record(
            None, "api", f"dotfiles set to {url}" + (f" (install: {script})" if script else ""), actor=caller.name
        )
        return self.get(caller)

    def remove(self, caller: Caller) -> dict[str, Any]:
        with self.sessions.begin() as session:
            row = session.get(Dotfiles, caller.name)
            if row is not None:
                session.delete(row)
        if row is not None:
            self.events.record(None, "api", "dotfiles removed", actor=caller.name)
        return {"removed": row is not None}
