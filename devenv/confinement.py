"""What a spec may name on disk: project files inside the project, host folders only where the admin allows.

A spec comes from anyone who can reach the daemon, and the daemon reads, locks and mounts what it names.
So a project file (a requirements file) is a plain relative path that stays inside the project folder,
symlinks resolved; a folder on the engine's host (a DVC directory remote) must lie under a folder the
daemon's admin lists in daemon.yaml (`allowed_host_folders`), and is never the engine's socket, a folder
holding it, or the daemon's home. These rules are pure functions, shared by the CLI (before upload), the
spec model and the daemon.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_PATH_BYTES = 1024
MAX_PART_BYTES = 255
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
ALLOW_HINT = "ask your admin to list the folder under allowed_host_folders in daemon.yaml"
_DRIVE_RE = re.compile(r"[A-Za-z]:")


class PathOutside(ValueError):
    """A path that resolves (through a symlink) outside the folder it must stay in."""


def name_problem(value: str) -> str | None:
    """Why a file name cannot be stored or shown safely (control characters, bad Unicode, length), or None."""
    if not value:
        return "is empty"
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        return "holds a control character or invalid Unicode"
    encoded = value.encode("utf-8")
    if len(encoded) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part.encode("utf-8")) > MAX_PART_BYTES for part in value.split("/")):
        return f"has a part longer than {MAX_PART_BYTES} bytes"
    return None


def project_path_problem(value: str) -> str | None:
    """Why `value` is not a plain path relative to the spec's folder, or None when it is one."""
    problem = name_problem(value)
    if problem is not None:
        return problem
    if value.startswith(("/", "\\")) or _DRIVE_RE.match(value):
        return "must be relative to the spec's folder, not an absolute path"
    if value.startswith("~"):
        return "must be relative to the spec's folder (~ is not expanded)"
    if "\\" in value:
        return "must use / between folders"
    parts = value.split("/")
    if ".." in parts:
        return "must not climb out with '..': the file must be inside the project folder"
    if not parts[-1] or parts[-1] == ".":
        return "names a folder, not a file"
    normal = posixpath.normpath(value)
    if normal != value:
        return f"must be written plainly, as {normal!r}"
    return None


def resolve_inside(root: Path, relative: str) -> Path:
    """root/relative with symlinks resolved; PathOutside when that leaves root."""
    real_root = root.resolve()
    target = (root / relative).resolve()
    if target != real_root and not target.is_relative_to(real_root):
        raise PathOutside(f"{relative} leads outside the project folder (through a symlink)")
    return target


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def normal_path(path: str) -> str:
    """The path without `.`, doubled or trailing slashes (POSIX keeps a leading `//`: dropped too)."""
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


@dataclass(frozen=True)
class HostFolders:
    """The admin's `allowed_host_folders`, and what is never mountable (the engine socket, the daemon's home)."""

    allowed: tuple[str, ...] = ()
    protected: tuple[str, ...] = field(default=ENGINE_SOCKETS)

    @classmethod
    def make(cls, allowed: Iterable[str], home: Path | None = None, guarded: Iterable[str] = ()) -> HostFolders:
        """From the admin's list; `home` (the daemon's) and `guarded` (engine socket, key file) are never allowed."""
        protected = [*ENGINE_SOCKETS, *guarded]
        if home is not None:
            protected += [str(home), os.path.realpath(home)]
        protected += [os.path.realpath(path) for path in protected]
        return cls(
            tuple(normal_path(path) for path in allowed), tuple(dict.fromkeys(normal_path(path) for path in protected))
        )

    def refusal(self, path: str, *, real: bool = False) -> tuple[str, str] | None:
        """(why, fix) when a spec may not mount `path` from the engine's host, else None.

        `real`: the engine is on this machine, so the path is resolved (symlinks) before it is judged."""
        issue = name_problem(path)
        if issue is not None:
            return f"the folder {issue}", "write the folder's own absolute path"
        if not path.startswith("/"):
            return "a folder on the engine's host must be an absolute path", "write the folder's own absolute path"
        if ".." in path.split("/"):
            return "must not contain '..'", "write the folder's own absolute path"
        normal, allowed = normal_path(path), self.allowed
        if real:
            normal = os.path.realpath(normal)
            allowed = tuple(os.path.realpath(folder) for folder in allowed)
        never = "use a folder that holds only the data"
        if normal == "/" or normal.endswith(".sock") or _is_socket(normal, real):
            return f"{normal} is (or holds) the engine's socket: it would give the workspace the host", never
        for guarded in self.protected:
            if _inside(normal, guarded) or _inside(guarded, normal):
                what = "the engine's socket" if guarded.endswith(".sock") else "the daemon's own folder"
                return f"{normal} is or holds {what}, which no workspace may mount", never
        if not any(_inside(normal, folder) for folder in allowed):
            where = ", ".join(allowed) if allowed else "none"
            return f"{normal} is not under a folder this daemon allows (allowed_host_folders: {where})", ALLOW_HINT
        return None


def _is_socket(path: str, real: bool) -> bool:
    if not real:
        return False
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
