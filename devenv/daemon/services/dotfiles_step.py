"""The owner's dotfiles repository (`devenv dotfiles set URL`) cloned into each of their workspaces'
homes and its install script run.

As Codespaces does it: once per home. The clone goes to ~/.dotfiles (through a temporary folder, so a
failed clone leaves nothing and is tried again at the next start); then the first install script
found runs, as dev, with its output streamed; a repository with none has its top-level dotfiles
linked into ~ (an existing file kept as NAME.devenv-orig, an existing folder left alone). A home
with ~/.dotfiles already is never touched again. Nothing here fails the workspace: what went wrong
is an event with its fix. Only the owner's setting is used: a grantee works in the owner's home.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from devenv.backends.base import Backend, Handle
from devenv.daemon.services.dotfiles import DotfilesRepo, lookup
from devenv.versioning.scripts import WORKSPACE_ENV
from devenv.versioning.steps import StepResult, run_script

if TYPE_CHECKING:
    from devenv.daemon.services.setup import StepContext

# Codespaces' order; the first one found in the repository runs.
CANDIDATES = (
    "install.sh",
    "install",
    "bootstrap.sh",
    "bootstrap",
    "script/bootstrap",
    "setup.sh",
    "setup",
    "script/setup",
)
NOT_LINKED = (".git", ".github", ".gitignore", ".gitmodules", ".gitattributes")  # the repository's own files
CLONE_TIMEOUT = 300  # seconds
INSTALL_TIMEOUT = 900
PRESENT, CLONE_FAILED, NO_SCRIPT, INSTALL_FAILED, OVER_SSH, NO_GIT = 10, 12, 14, 15, 16, 17
DONE = ("cloned", "present", "install_failed")  # the home has its clone: later starts leave it be
MARK = "devenv-dotfiles: "
_TAIL = 2000


def script(repo: DotfilesRepo) -> str:
    """Run as dev in the workspace: clone into ~/.dotfiles once, then install or link. Its exit code says
    what it found (PRESENT, CLONE_FAILED, ...); lines starting with MARK say what it did."""
    lines = [
        "set -uo pipefail",
        f"[ -r {WORKSPACE_ENV} ] && . {WORKSPACE_ENV}",
        'dest="$HOME/.dotfiles"; temp="$HOME/.devenv-dotfiles-clone"',
        'if [ -e "$dest" ] || [ -L "$dest" ]; then',
        '  echo "devenv: ~/.dotfiles is there already; not cloned or installed again"; exit 10',
        "fi",
    ]
    if repo.over_ssh:
        return "\n".join([*lines, f"exit {OVER_SSH}"]) + "\n"
    lines += [
        f"command -v git >/dev/null || {{ echo 'devenv: git is not installed in this image' >&2; exit {NO_GIT}; }}"
    ]
    clone = (
        shlex.join(["timeout", "--kill-after=10", str(CLONE_TIMEOUT), "git", "clone", "--progress", "--", repo.url])
        + ' "$temp"'
    )
    lines += [
        'rm -rf -- "$temp"',
        f"echo {shlex.quote(f'devenv: cloning dotfiles {repo.url} into ~/.dotfiles')}",
        f'{clone} || {{ code=$?; rm -rf -- "$temp"; echo "devenv: git clone exited $code" >&2; exit {CLONE_FAILED}; }}',
        f'mv -- "$temp" "$dest" && cd "$dest" || exit {CLONE_FAILED}',
        f"script={shlex.quote(repo.install or '')}",
        'if [ -n "$script" ] && [ ! -f "$script" ]; then',
        f'  echo "devenv: $script is not a file in the dotfiles repository" >&2; exit {NO_SCRIPT}',
        "fi",
        f"for candidate in {shlex.join(CANDIDATES)}; do",
        '  [ -z "$script" ] && [ -f "$candidate" ] && script="$candidate"',
        "done",
        'if [ -n "$script" ]; then',
        '  echo "devenv: running ~/.dotfiles/$script"',
        '  if [ -x "$script" ]; then run=("./$script"); else run=(bash "./$script"); fi',
        f'  timeout --kill-after=10 {INSTALL_TIMEOUT} "${{run[@]}}" </dev/null; code=$?',
        f'  [ "$code" -eq 0 ] || {{ echo "devenv: $script exited $code" >&2; exit {INSTALL_FAILED}; }}',
        f'  echo "{MARK}ran $script"; exit 0',
        "fi",
        "shopt -s nullglob",
        'for path in "$dest"/.[!.]* "$dest"/..?*; do',
        '  name=${path##*/}; target="$HOME/$name"',
        f'  case "$name" in {"|".join(NOT_LINKED)}) continue;; esac',
        '  if [ -L "$target" ] && [ "$(readlink -- "$target")" = "$path" ]; then continue; fi',
        '  if [ -d "$target" ] && [ ! -L "$target" ]; then',
        f'    echo "{MARK}skipped $name (the folder ~/$name is there)"; continue',
        "  fi",
        '  if [ -e "$target" ] || [ -L "$target" ]; then',
        '    if [ -e "$target.devenv-orig" ] || [ -L "$target.devenv-orig" ]; then',
        f'      echo "{MARK}skipped $name (~/$name and ~/$name.devenv-orig are there)"; continue',
        "    fi",
        f'    mv -- "$target" "$target.devenv-orig" && echo "{MARK}kept $name.devenv-orig" || continue',
        "  fi",
        f'  ln -s -- "$path" "$target" && echo "{MARK}linked $name"',
        "done",
    ]
    return "\n".join(lines) + "\n"


def https_of(url: str) -> str | None:
    """The https URL of an ssh one (git@github.com:me/dots.git -> https://github.com/me/dots.git), if plain."""
    if "://" in url:
        parts = urlsplit(url)
        host, path = parts.hostname, parts.path.lstrip("/")
    else:
        host, _, path = url.split("@", 1)[-1].partition(":")
    return f"https://{host}/{path}" if host and path else None


def _tail(output: str) -> str:
    lines = [line for line in re.split(r"[\r\n]", output) if line.strip()]
    return "\n".join(lines)[-_TAIL:]


def _clone_hint(output: str, url: str) -> str:
    lowered = output.lower()
    if (
        "could not read username" in lowered
        or "authentication failed" in lowered
        or re.search(r"returned error: 40[13]\b", lowered)
    ):
        return (
            "devenv clones dotfiles without credentials: make the repository public, or check the URL "
            "(`devenv dotfiles`); it is tried again at the next start"
        )
    if "git clone exited 124" in lowered or "git clone exited 137" in lowered:
        return f"the clone took over {CLONE_TIMEOUT} s: keep the dotfiles repository small"
    if any(
        words in lowered
        for words in (
            "could not resolve host",
            "connection refused",
            "timed out",
            "failed to connect",
            "network is unreachable",
        )
    ):
        return (
            f"the workspace cannot reach {urlsplit(url).hostname or url}: check the URL and the network; "
            "it is tried again at the next start"
        )
    return (
        "check the URL (`devenv dotfiles`; `devenv dotfiles set URL` to change it); it is tried again at the next start"
    )


def _done(output: str) -> dict[str, Any]:
    """What the script said it did: the install script it ran, the files it linked, kept or skipped."""
    said = [line.split(MARK, 1)[1].strip() for line in re.split(r"[\r\n]", output) if MARK in line]
    ran = next((line.removeprefix("ran ") for line in said if line.startswith("ran ")), None)
    return {
        "script": ran,
        "linked": [line.removeprefix("linked ") for line in said if line.startswith("linked ")],
        "kept": [line.removeprefix("kept ") for line in said if line.startswith("kept ")],
        "skipped": [line.removeprefix("skipped ") for line in said if line.startswith("skipped ")],
    }


def install(
    backend: Backend, handle: Handle, repo: DotfilesRepo, on_line: Callable[[str], None]
) -> tuple[StepResult, dict[str, Any]]:
    """Clone and install (or link) in the workspace; what happened, and the details for the record."""
    code, output = run_script(backend, handle, script(repo), on_line)
    done = _done(output)
    if code == 0:
        if done["script"]:
            what = f"ran {done['script']}"
        elif done["linked"]:
            what = f"linked {', '.join(done['linked'])} into ~" + (
                f" (kept the ones there as {', '.join(done['kept'])})" if done["kept"] else ""
            )
        else:
            what = "found no install script and no dotfiles to link"
        if done["skipped"]:
            what += f"; skipped {'; '.join(done['skipped'])}"
        return StepResult("cloned", f"dotfiles: cloned {repo.url} into ~/.dotfiles and {what}"), done
    if code == PRESENT:
        return StepResult("present", "~/.dotfiles is there already (not cloned or installed again)"), done
    if code == OVER_SSH:
        https = https_of(repo.url)
        return StepResult(
            "unsupported",
            f"dotfiles not cloned: {repo.url} is an ssh URL, and no ssh agent is forwarded while a workspace starts",
            hint=(f"`devenv dotfiles set {https}` if it is public" if https else "set an https URL")
            + "; or clone it yourself over ssh (with agent forwarding) into ~/.dotfiles and run its install script",
        ), done
    if code == NO_GIT:
        return StepResult(
            "no_git",
            "dotfiles not cloned: this workspace's image has no git",
            hint="add git under `apt:` in devenv.yaml (a spec with `repo:` has it already), then "
            "`devenv rebuild WS`; or set `dotfiles: false` there",
        ), done
    if code == NO_SCRIPT:
        return StepResult(
            "install_failed",
            f"dotfiles: cloned {repo.url}, but it has no {repo.install}",
            hint="`devenv dotfiles set URL --install PATH` with a path in the repository, or leave "
            "--install out to have one found by name",
            output=_tail(output),
        ), done
    if code == INSTALL_FAILED:
        ran = next(
            (
                line.split("devenv: ", 1)[1]
                for line in re.split(r"[\r\n]", output)
                if line.startswith("devenv: ") and " exited " in line
            ),
            "the install script exited 1",
        )
        name = ran.rsplit(" exited ", 1)[0]
        timed_out = ran.endswith((" exited 124", " exited 137"))
        return StepResult(
            "install_failed",
            f"dotfiles: cloned {repo.url} into ~/.dotfiles, but {ran}"
            + (f" (ran over {INSTALL_TIMEOUT} s)" if timed_out else ""),
            hint=f"fix it in the dotfiles repository; to run it again here: `cd ~/.dotfiles && bash {name}`",
            output=_tail(output),
        ), {**done, "script": name}
    return StepResult(
        "failed",
        f"dotfiles: could not clone {repo.url}; nothing was kept",
        hint=_clone_hint(output, repo.url),
        output=_tail(output),
    ), done


def run(context: StepContext) -> dict[str, Any] | None:
    """What this step found, kept on the record under setup["dotfiles"]; None when there is nothing to do."""
    if context.spec is None or not context.spec.dotfiles:
        return None
    previous = context.setup.get("dotfiles") or {}
    if previous.get("status") in DONE:
        return previous  # this home has its clone: no exec, nothing run again
    repo = lookup(context.sessions, context.ws.owner)
    if repo is None:
        return None
    if (previous.get("status") == "unsupported" and previous.get("url") == repo.url) or (
        previous.get("status") == "no_git" and previous.get("image_hash") == context.ws.image_hash
    ):
        return previous  # told once already; nothing changed that would make it work now
    details: dict[str, Any] = {}

    def work(on_line: Callable[[str], None]) -> StepResult:
        result, found = install(context.backend, context.handle, repo, on_line)
        details.update(found)
        return result

    context.status(f"dotfiles: cloning {repo.url}")
    record = context.step("dotfiles", work)
    return {**record, "url": repo.url, "image_hash": context.ws.image_hash, **details}
