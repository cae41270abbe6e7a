"""`devenv init` reading the git checkout: the remote and branch for `repo:`, or why the folder is uploaded instead.

The rule: `repo:` is filled only when the checkout is clean and its branch is pushed, so a clone gives the
workspace exactly the code on this disk. With no remote, uncommitted edits, untracked files or unpushed
commits, `repo:` is left out and `devenv up` uploads the folder, so the person's local work reaches the
workspace; `--repo` fills it anyway, `--no-repo` never. Credentials in a remote URL are never written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devenv.spec.discover_model import Found

INIT_WRITES = ("devenv.yaml", "devenv.lock", "requirements.devenv.in")
_TIMEOUT_S = 15


def _git(root: Path, *args: str) -> str | None:
    """git's stdout, or None when git fails (not a checkout, no such ref) or is missing."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=_TIMEOUT_S, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def clean_url(url: str, top: Path) -> tuple[str, bool]:
    """(the URL without credentials, whether some were removed). Local paths become absolute."""
    if "://" not in url:
        if ":" in url.split("/", 1)[0] and not url.startswith(("/", ".")):
            return url, False  # scp-like git@host:org/repo.git: the user is not a secret
        return str((top / url).resolve()) if not url.startswith("/") else url, False
    parts = urlsplit(url)
    ssh = parts.scheme in ("ssh", "git+ssh", "ssh+git")
    if "@" not in parts.netloc:
        if parts.query and not ssh:  # ?private_token=...
            return urlunsplit(parts._replace(query="")), True
        return url, False
    userinfo, host = parts.netloc.rsplit("@", 1)
    if ssh and ":" not in userinfo:
        return url, False  # ssh://git@host/...: the user is not a secret
    keep = userinfo.split(":", 1)[0] + "@" if ssh else ""
    return urlunsplit(parts._replace(netloc=keep + host, query="" if not ssh else parts.query)), True


def git_repo(found: Found, force: bool | None) -> dict[str, Any] | None:
    """`repo:` data when the rule above allows it (or --repo forces it); notes say which and why."""
    top_text = _git(found.root, "rev-parse", "--show-toplevel")
    if top_text is None:
        found.note("git", "code: not a git checkout (or git is missing): `devenv up` uploads this folder")
        return None
    top = Path(top_text)
    remotes = (_git(top, "remote") or "").split()
    if not remotes:
        found.note("git", "code: the checkout has no remote: `devenv up` uploads this folder")
        return None
    remote = "origin" if "origin" in remotes else remotes[0]
    raw = _git(top, "remote", "get-url", remote) or ""
    url, stripped = clean_url(raw, top) if raw else ("", False)
    if stripped:
        found.note(
            "git",
            f"git remote {remote}: credentials removed from its URL; for a private https repository "
            "put a token in a secret and name it in repo: token_secret:",
        )
    head = _git(top, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(top, "symbolic-ref", "--short", "-q", "HEAD")
    local = _local_work(top, remote, branch) if head else ["it has no commits yet"]
    if force is False:
        found.note("git", "code: --no-repo: `devenv up` uploads this folder")
        return None
    if local and not force:
        found.note(
            "git",
            f"code: not cloning {remote} because {'; '.join(local)}: `devenv up` uploads this folder "
            "so local edits reach the workspace (commit and push, or pass --repo to clone instead)",
        )
        return None
    if not url or not head:
        found.note("git", f"code: remote {remote} has no usable URL or the branch no commit: `devenv up` uploads")
        return None
    data: dict[str, Any] = {"url": url, "ref": branch or head}
    if top.resolve() != found.root.resolve():
        found.note(
            "git",
            f"the project is {found.root.resolve().relative_to(top.resolve())} inside the repository; "
            "repo: clones the whole repository",
        )
    found.took("git", f"repo {url} ref {data['ref']} (remote {remote}{', forced by --repo' if local else ''})")
    return data


def _local_work(top: Path, remote: str, branch: str | None) -> list[str]:
    """What a clone of the remote would miss: edits, untracked files, commits not pushed."""
    reasons: list[str] = []
    status = _git(top, "status", "--porcelain", "--untracked-files=normal") or ""
    changed = [line for line in status.splitlines() if line[3:].strip('"').rsplit("/", 1)[-1] not in INIT_WRITES]
    if changed:
        reasons.append(f"{len(changed)} file{'s have' if len(changed) != 1 else ' has'} uncommitted changes")
    upstream = _git(top, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
    if upstream:
        ahead = _git(top, "rev-list", "--count", "@{upstream}..HEAD") or "0"
        if ahead != "0":
            reasons.append(f"{ahead} commit{'s are' if ahead != '1' else ' is'} not pushed to {upstream}")
    elif not _git(top, "branch", "-r", "--contains", "HEAD"):
        reasons.append(f"{'branch ' + branch if branch else 'HEAD'} is not pushed to {remote}")
    return reasons


def last_change(root: Path, files: list[str]) -> str | None:
    """The day (YYYY-MM-DD, UTC) of the last commit that changed any of `files`, or None when they have
    uncommitted changes (the dependencies are being written now), none is committed, or it is not a checkout."""
    if not files or _git(root, "rev-parse", "--show-toplevel") is None:
        return None
    if _git(root, "status", "--porcelain", "--untracked-files=normal", "--", *files):
        return None
    stamp = _git(root, "log", "-1", "--format=%ct", "--", *files)
    if not stamp:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(int(stamp), dt.UTC).date().isoformat()
