"""Which files of a project folder go into its workspace, and the tar they travel in (client side).

Why the same answer as git: in a checkout the files are `git ls-files --cached --others --exclude-standard`
(tracked and untracked, minus .gitignore, minus deleted ones), so what is sent is what the person would
commit; outside git every file but a default ignore list (caches, virtualenvs, .git). `.devenvignore`
(gitignore-like patterns) leaves more out in both. A symlink is kept only when it stays inside the folder.
The tar is deterministic (sorted, owner 0, normal modes, mtimes kept): the same folder gives the same hash.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO

from devenv.code.manifest import CodeTooLarge, human_size

IGNORE_FILE = ".devenvignore"
DEFAULT_IGNORE = (
    ".git/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "node_modules/",
    ".ipynb_checkpoints/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".tox/",
    "*.pyc",
    ".DS_Store",
)
_GIT_TIMEOUT = 60


@dataclass(frozen=True)
class Entry:
    path: str  # relative, with /
    size: int = 0
    link: str | None = None  # a symlink's target (relative, inside the folder)


@dataclass
class Collected:
    folder: Path
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    git: dict[str, str | int | None] | None = None  # branch, commit, edited

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.entries)


def folder_name(folder: Path) -> str:
    """The folder's name in the workspace's home: its own name, made safe (letters, digits, . _ -)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-.")[:100]
    return name if name and name[0].isalnum() else "project"


def read_patterns(folder: Path) -> list[str]:
    path = folder / IGNORE_FILE
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """gitignore-like: `name` matches at any depth, `a/b` from the folder's top, `dir/` folders only."""
    parts = path.split("/")
    for pattern in patterns:
        folders_only = pattern.endswith("/")
        bare = pattern.strip("/")
        if "/" in bare:
            prefixes = ["/".join(parts[:index]) for index in range(1, len(parts) + (0 if folders_only else 1))]
            if any(fnmatchcase(prefix, bare) for prefix in prefixes):
                return True
        elif any(fnmatchcase(part, bare) for part in (parts[:-1] if folders_only else parts)):
            return True
    return False


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=_GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="surrogateescape") if done.returncode == 0 else None


def _git_files(folder: Path) -> tuple[list[str], dict[str, str | int | None]] | None:
    """The checkout's files under `folder` (None outside git), and where they came from."""
    if (_git(folder, "rev-parse", "--is-inside-work-tree") or "").strip() != "true":
        return None
    listed = _git(folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is None:
        return None
    deleted = set((_git(folder, "ls-files", "-z", "--deleted") or "").split("\0"))
    files = sorted({name for name in listed.split("\0") if name and name not in deleted})
    branch = (_git(folder, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    commit = (_git(folder, "rev-parse", "--short", "HEAD") or "").strip() or None
    status = _git(folder, "status", "--porcelain", "-z", "--untracked-files=all", "--", ".") or ""
    edited = len([item for item in status.split("\0") if len(item) > 3 and item[2] == " "])
    return files, {"branch": branch, "commit": commit, "edited": edited}


def _walk(folder: Path, patterns: list[str]) -> list[str]:
    found = []
    for top, dirs, files in os.walk(folder):
        relative = os.path.relpath(top, folder)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        kept = []
        for name in sorted(dirs):
            if ignored(prefix + name + "/x", patterns):
                continue
            if os.path.islink(os.path.join(top, name)):
                found.append(prefix + name)  # a symlink to a folder: checked like any other link
            else:
                kept.append(name)
        dirs[:] = kept
        found.extend(prefix + name for name in files)
    return sorted(name for name in found if not ignored(name, patterns))


def collect(folder: Path) -> Collected:
    """The files of `folder` to place in the workspace, and notes on what was left out."""
    folder = folder.resolve()
    root = str(folder)
    patterns = read_patterns(folder)
    from_git = _git_files(folder)
    collected = Collected(folder, git=from_git[1] if from_git else None)
    names = (
        [name for name in from_git[0] if not ignored(name, patterns)]
        if from_git
        else _walk(folder, [*DEFAULT_IGNORE, *patterns])
    )
    for name in names:
        if any(char in name for char in "\n\r\0") or name.startswith("/") or ".." in name.split("/"):
            collected.notes.append(f"{name!r}: a name that cannot be placed (left out)")
            continue
        full = os.path.join(root, name)
        try:
            info = os.lstat(full)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(full)
            real = os.path.realpath(full)
            lexical = os.path.normpath(os.path.join(os.path.dirname(name), target)) if not os.path.isabs(target) else ""
            if not (real == root or real.startswith(root + os.sep)):
                collected.notes.append(f"{name}: a symlink leading out of the folder (left out)")
            elif os.path.isabs(target) or lexical.split(os.sep)[0] == "..":
                collected.entries.append(Entry(name, link=os.path.relpath(real, os.path.dirname(full))))
            else:
                collected.entries.append(Entry(name, link=target))
        elif stat.S_ISREG(info.st_mode):
            collected.entries.append(Entry(name, size=info.st_size))
        elif not stat.S_ISDIR(info.st_mode):
            collected.notes.append(f"{name}: not a file (left out)")
    return collected


def write_tar(collected: Collected, out: IO[bytes]) -> None:
    """The entries as an uncompressed tar, in a stable order: the same files make the same bytes."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in collected.entries:
            full = collected.folder / entry.path
            info = tarfile.TarInfo(entry.path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.link is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
                info.mtime = 0
                archive.addfile(info)
                continue
            st = full.stat()
            info.size, info.mtime = st.st_size, int(st.st_mtime)
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            with open(full, "rb") as source:
                archive.addfile(info, source)


def describe(collected: Collected, size: float) -> str:
    """ "123 files, 4.5 MB from /path (git main@abc1234 + 2 edited files)" """
    where = ""
    if collected.git is not None:
        git = collected.git
        commit = f"{git.get('branch') or 'HEAD'}@{git.get('commit')}" if git.get("commit") else "no commit yet"
        edited = int(git.get("edited") or 0)
        where = f" (git {commit}" + (f" + {edited} edited file{'s' if edited != 1 else ''})" if edited else ")")
    return f"{len(collected.entries)} files, {human_size(size)} uploaded from {collected.folder}{where}"


def too_large(collected: Collected, limit: int | None, reason: str) -> CodeTooLarge:
    """The folder is over the daemon's limit: name the largest files and how to leave them out."""
    largest = sorted(collected.entries, key=lambda entry: -entry.size)[:5]
    named = ", ".join(f"{entry.path} ({human_size(entry.size)})" for entry in largest)
    over = f" (limit {human_size(limit)})" if limit else ""
    return CodeTooLarge(
        f"the project folder is too large to upload: {human_size(collected.bytes)}{over}; {reason}; "
        f"the largest files: {named}",
        hint=f"leave them out with .gitignore or {IGNORE_FILE} in {collected.folder} (one pattern a "
        "line: `data/`, `*.ckpt`); an admin raises the limit with DEVENV_MAX_CODE_BYTES",
    )
