"""Who is who inside a workspace: everyone runs as uid `dev`, so each grantee carries a marker.

A marker is a pair of supplementary groups: one for what the person starts over SSH and `devenv
exec`, the next one for their own JupyterLab server and its kernels and terminals. A process without
CAP_SETGID cannot drop a supplementary group, and no-new-privileges keeps setgid programs from
swapping them, so every descendant carries the marker however it detaches (nohup, setsid, double
fork, `env -i`): when access ends, the workspace kills every process holding the group.

Over SSH a grantee logs in under a login name of their own that maps to `dev`'s uid and home, and
whose groups add the marker; sshd lets only that person's certificate in under that name. The
numbers come from the workspace's grant rows in the order they were made, which never changes while
the workspace lives, so a number is never handed to someone else while a process may still hold it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

OWNER_LOGIN = "dev"
GID_BASE = 42000  # above system and image groups, below nogroup (65534)
GID_PAIRS = 9000  # marker pairs: GID_BASE .. GID_BASE + 2 * GID_PAIRS - 1
LOGIN_PREFIX = "dv-"  # sshd_config: AllowUsers dev dv-*


@dataclass(frozen=True)
class Marker:
    """A grantee's groups in one workspace: `gid` for SSH and exec, `gid + 1` for their JupyterLab."""

    person: str
    gid: int

    @property
    def jupyter_gid(self) -> int:
        return self.gid + 1

    @property
    def login(self) -> str:
        return f"{LOGIN_PREFIX}{slug(self.person)}-{self.gid}"


def slug(person: str) -> str:
    """A readable part of a login name (at most 20 of [a-z0-9-]); the gid makes it unique."""
    text = re.sub(r"[^a-z0-9]+", "-", person.lower()).strip("-")[:20].strip("-")
    return text or "person"


def _slot(person: str) -> int:
    return int.from_bytes(hashlib.sha256(person.encode()).digest()[:4], "big") % GID_PAIRS


def assign(persons: Iterable[str]) -> dict[str, Marker]:
    """Markers for the people of a workspace's grants, in the order the grants were first made.

    Each person's pair starts at a slot from their name, moved on past pairs taken by earlier grants:
    the same grants always give the same numbers.
    """
    taken: set[int] = set()
    found: dict[str, Marker] = {}
    for person in persons:
        if person in found:
            continue
        slot = _slot(person)
        while slot in taken:
            slot = (slot + 1) % GID_PAIRS
        taken.add(slot)
        found[person] = Marker(person, GID_BASE + 2 * slot)
    return found


def logins_file(owner: str, live: Iterable[tuple[Marker, bool, bool]]) -> bytes:
    """/etc/devenv/ssh/logins: `LOGIN PERSON GID KINDS` per line, the owner as `dev` (no marker).

    ssh-principals answers sshd from it (a login lets in only its own person, and only with SSH);
    the workspace's access tool makes the passwd and group entries from it.
    """
    lines = [f"{OWNER_LOGIN} {owner} - ssh,jupyter\n"]
    for marker, ssh, jupyter in live:
        kinds = ",".join(kind for kind, on in (("ssh", ssh), ("jupyter", jupyter)) if on)
        if kinds:
            lines.append(f"{marker.login} {marker.person} {marker.gid} {kinds}\n")
    return "".join(lines).encode()


def person_jupyter_secret(workspace_secret: str, marker: Marker) -> str:
    """The secret of a grantee's own JupyterLab server, derived from the workspace's (the access tool
    in the workspace derives the same from the root-only copy it holds)."""
    return hmac.new(workspace_secret.encode(), f"person\0{marker.jupyter_gid}".encode(), hashlib.sha256).hexdigest()
