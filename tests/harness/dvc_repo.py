"""Git repos whose data is tracked by real DVC and pushed to a real remote, for tests of data pulls.

The remote's URL and settings go to `.dvc/config` (committed, so a clone knows where to pull from);
credentials never do: they reach dvc through the environment, as they will in a workspace.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.git_server import git, git_env

REMOTE_NAME = "storage"


@dataclass(frozen=True)
class DvcRepo:
    """A committed DVC project: where it is, its commit, and the sha256 of each data file by relative path."""

    path: Path
    commit: str
    files: dict[str, str]
    remote_url: str


def dvc(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run the real dvc CLI of this Python in `cwd`; its stdout. Fails with its output in the message."""
    full_env = git_env({"DVC_NO_ANALYTICS": "1", **(env or {})})
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed ({done.returncode}) in {cwd}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def sha256_of(root: Path, relatives: Iterable[str]) -> dict[str, str]:
    """The sha256 of each file under `root`, by relative path (to compare a pull against the original)."""
    return {relative: hashlib.sha256((root / relative).read_bytes()).hexdigest() for relative in relatives}


def make_dvc_repo(
    work: Path,
    data: dict[str, bytes],
    *,
    remote_url: str,
    remote_config: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    message: str = "track data with dvc",
) -> DvcRepo:
    """A git repo at `work` with `data` (relative path -> bytes) added to DVC and pushed to `remote_url`.

    `remote_url` is an absolute directory or `s3://bucket/prefix`; `remote_config` adds remote settings
    (e.g. {"endpointurl": ...}); `env` carries credentials to `dvc push` only.
    """
    work.mkdir(parents=True, exist_ok=True)
    git(work, "init", "--quiet", "--initial-branch=main")
    dvc(work, "init", "--quiet")
    for relative, content in data.items():
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    dvc(work, "add", "--quiet", *data)
    dvc(work, "remote", "add", "--default", REMOTE_NAME, remote_url)
    for key, value in (remote_config or {}).items():
        dvc(work, "remote", "modify", REMOTE_NAME, key, value)
    dvc(work, "push", "--quiet", env=env)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "--message", message)
    tracked = set(git(work, "ls-files").splitlines())
    leaked = sorted(relative for relative in data if relative in tracked)
    if leaked:
        raise RuntimeError(f"data files ended up in git, not in dvc: {leaked}")
    return DvcRepo(work, git(work, "rev-parse", "HEAD"), sha256_of(work, data), remote_url)
