"""What `devenv promote` reads from the person's git checkout, on their machine: the commit, its time, where
it came from, its DVC data hash, and its files as `git archive` gives them.

Why here and not in the daemon: the daemon has no checkout (it may be another machine), so the client
reads git and sends these facts with the archive; the daemon assembles the image from them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from devenv.errors import DevenvError, UsageError
from devenv.promote.package import CommitFacts
from devenv.versioning.facts import data_hash, data_outs


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def git_commit(folder: Path, ref: str = "HEAD") -> tuple[Path, str, int, bool]:
    """(repository root, full commit, commit time, whether the tree is dirty) of the repo holding `folder`."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(
                f"git {' '.join(args)} in {folder}: {done.stderr.strip() or 'failed'}",
                hint="promote packages a commit: run it inside the project's git repository",
            )
        return done.stdout.strip()

    root = Path(git("rev-parse", "--show-toplevel"))
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    when = int(git("show", "-s", "--format=%ct", commit))
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return root, commit, when, dirty


def source_url(root: Path) -> str | None:
    """The origin's URL without credentials, for org.opencontainers.image.source."""
    url = _git(root, "config", "--get", "remote.origin.url")
    if not url or "://" not in url:
        return url or None
    parts = urlsplit(url)
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


def commit_data_hash(root: Path, commit: str) -> str | None:
    """The DVC data hash at `commit`, from its .dvc files and dvc.lock (as `devenv status` computes it)."""
    names = [
        name
        for name in _git(root, "ls-tree", "-r", "--name-only", commit).splitlines()
        if name.endswith(".dvc") or name.rsplit("/", 1)[-1] == "dvc.lock"
    ]
    return data_hash(data_outs({name: _git(root, "show", f"{commit}:{name}") for name in names}))


def read_commit(folder: Path, ref: str = "HEAD", *, allow_dirty: bool = False) -> tuple[CommitFacts, Path]:
    """The facts of `ref` in the repository holding `folder`, and the repository's root. With `allow_dirty`,
    uncommitted changes are packaged too (as a commit object git makes without touching the tree)."""
    root, commit, when, dirty = git_commit(folder, ref)
    notes: list[str] = []
    if dirty and allow_dirty:
        stashed = _git(root, "stash", "create")
        if stashed:
            commit = stashed
            notes.append("packaged the working tree's uncommitted changes (--allow-dirty)")
    elif dirty:
        notes.append(f"the working tree has uncommitted changes: packaged commit {commit[:12]} without them")
    facts = CommitFacts(commit, when, dirty, source_url(root), commit_data_hash(root, commit), tuple(notes))
    return facts, root


def write_archive(root: Path, commit: str, out: IO[bytes]) -> None:
    """The tracked files of `commit` (never the working tree) as git archive's tar."""
    done = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit], stdout=out, stderr=subprocess.PIPE
    )
    if done.returncode != 0:
        raise DevenvError(f"git archive {commit[:12]} failed: {done.stderr.decode(errors='replace').strip()}")
