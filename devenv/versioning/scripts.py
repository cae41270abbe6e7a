"""The shell and Python run inside a workspace for its setup steps, built with every value quoted.

Each script runs as `dev` with the workspace's secrets and pins in its environment (the same file
login shells source), and its output also goes to the container's log (PID 1's stdout), so
`devenv logs` shows a clone or a pull beside sshd and JupyterLab.
"""

from __future__ import annotations

import shlex

from devenv.backends.base import HOME_MOUNT
from devenv.spec.models import Data, Repo

WORKSPACE_ENV = "/opt/devenv/etc/workspace-env.sh"
CREDENTIAL_HELPER = "/opt/devenv/bin/git-credential-devenv"
DVC_REMOTE = "devenv"  # the remote devenv configures (in .dvc/config.local) for a URL or path in the spec

# Exit codes the clone script uses to say what it found, beside git's own failures.
CLONE_PRESENT = 10  # a clone is there already: later starts never clone again
CLONE_BLOCKED = 11  # the folder holds something that is not a clone: left exactly as it is
CLONE_FAILED = 12
CHECKOUT_FAILED = 13
DATA_NO_REPO = 20

# Runs the script (argument 1) as dev, with output to the exec and to the container's log. Root
# is needed only to write to PID 1's stdout; the work itself never runs as root.
_AS_DEV = (
    "setpriv --reuid=dev --regid=dev --init-groups env HOME=/home/dev USER=dev LOGNAME=dev "
    'GIT_TERMINAL_PROMPT=0 DVC_NO_ANALYTICS=1 bash -c "$1" 2>&1 | tee -a /proc/1/fd/1; exit "${PIPESTATUS[0]}"'
)


def as_dev(script: str) -> list[str]:
    """argv for backend.exec(user="root") that runs `script` as dev, logged to the container too."""
    return ["bash", "-c", _AS_DEV, "devenv-setup", script]


def repo_dir(repo: Repo) -> str:
    return f"{HOME_MOUNT}/{repo.folder}"


def clone_script(repo: Repo, *, ref: str | None = None) -> str:
    """Clone once into a temporary folder, then move it in place: a failed clone leaves nothing, and
    an existing folder (a clone, or the person's own files) is never touched."""
    dest = repo_dir(repo)
    temp = f"{HOME_MOUNT}/.devenv-clone-{repo.folder}"
    ref = ref or repo.ref
    helper = []
    if repo.token_secret:
        value = f"{CREDENTIAL_HELPER} {repo.token_secret} {repo.username}"
        helper = ["-c", "credential.helper=", "-c", f"credential.helper={value}"]
    clone = shlex.join(["git", "clone", "--progress", *helper, "--", repo.url, temp])
    lines = [
        "set -uo pipefail",
        f". {WORKSPACE_ENV}",
        f"dest={shlex.quote(dest)}; temp={shlex.quote(temp)}",
        f'if [ -e "$dest/.git" ]; then echo "devenv: $dest is a clone already; not cloning again"; '
        f"exit {CLONE_PRESENT}; fi",
        'if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then',
        '  echo "devenv: $dest holds files but no git clone; leaving it as it is" >&2',
        f"  exit {CLONE_BLOCKED}",
        "fi",
        'rm -rf -- "$temp"',
        f'printf "devenv: cloning %s into %s\\n" {shlex.quote(repo.url)} "$dest"',
        f'{clone} || {{ rm -rf -- "$temp"; exit {CLONE_FAILED}; }}',
    ]
    if ref:
        lines.append(
            f'git -C "$temp" checkout --quiet {shlex.quote(ref)} || {{ rm -rf -- "$temp"; exit {CHECKOUT_FAILED}; }}'
        )
    lines += [
        'rmdir -- "$dest" 2>/dev/null || true',
        'mv -- "$temp" "$dest"',
        'echo "devenv: cloned at $(git -C "$dest" rev-parse HEAD)"',
    ]
    return "\n".join(lines) + "\n"


def dvc_pull_script(repo: Repo, data: Data) -> str:
    """Configure the spec's remote in the clone's local config (never committed), then pull."""
    lines = [
        "set -uo pipefail",
        f". {WORKSPACE_ENV}",
        f"cd {shlex.quote(repo_dir(repo))} || "
        f"{{ echo 'devenv: no clone to pull data into' >&2; exit {DATA_NO_REPO}; }}",
    ]
    remote = data.remote
    if data.remote_is_url:
        add = ["dvc", "remote", "add", "--local", "--force", DVC_REMOTE, data.remote]
        lines.append(shlex.join(add) + " || exit $?")
        remote = DVC_REMOTE
    if data.endpoint:
        lines.append(
            shlex.join(["dvc", "remote", "modify", "--local", remote, "endpointurl", data.endpoint]) + " || exit $?"
        )
    lines.append(f"echo {shlex.quote(f'devenv: pulling DVC data from {data.remote}')}")
    if not data.paths:
        lines.append(shlex.join(["dvc", "pull", "--remote", remote]))
        return "\n".join(lines) + "\n"
    # A folder that is not itself a DVC output is searched for .dvc files (-R); outputs are pulled as named.
    lines += [
        "outs=(); folders=()",
        f"for target in {shlex.join(data.paths)}; do",
        '  if [ -d "$target" ] && [ ! -e "$target.dvc" ]; then folders+=("$target"); else outs+=("$target"); fi',
        "done",
        "status=0",
        f'if [ "${{#outs[@]}}" -gt 0 ]; then dvc pull --remote {shlex.quote(remote)} "${{outs[@]}}" || status=$?; fi',
        f'if [ "${{#folders[@]}}" -gt 0 ]; then dvc pull --remote {shlex.quote(remote)} --recursive "${{folders[@]}}" '
        "|| status=$?; fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


# Facts about the clone, the DVC files that pin the data, and W&B runs, as one JSON document.
# Standard library only: it runs with the base's python3, whatever the project's venv holds.
FACTS_PY = r"""
import glob, hashlib, json, os, subprocess, sys

repo, home = sys.argv[1], sys.argv[2]
out = {"repo": None, "dvc_files": {}, "wandb_runs": []}

def git(*args, text=True):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=text)

if repo and os.path.isdir(os.path.join(repo, ".git")):
    head = git("rev-parse", "HEAD").stdout.strip()
    status = git("status", "--porcelain=v2", "--branch", "--untracked-files=normal").stdout.splitlines()
    headers = dict(line[2:].split(" ", 1) for line in status if line.startswith("# ") and " " in line[2:])
    changes = [line for line in status if not line.startswith("#")]
    diff_hash = None
    if changes:
        digest = hashlib.sha256(git("diff", "HEAD", "--binary", text=False).stdout)
        untracked = git("ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
        for name in sorted(filter(None, untracked)):
            digest.update(b"\0untracked\0" + name.encode())
            try:
                with open(os.path.join(repo, name), "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
            except OSError:
                pass
        diff_hash = digest.hexdigest()
    remote = git("config", "--get", "remote.origin.url").stdout.strip()
    ahead = headers.get("branch.ab", "")
    out["repo"] = {"commit": head or None, "branch": headers.get("branch.head"),
                   "upstream": headers.get("branch.upstream"), "ab": ahead or None,
                   "dirty": bool(changes), "changes": len(changes), "diff_hash": diff_hash,
                   "remote": remote or None}
    listed = git("ls-files", "-z", "--", "*.dvc", "dvc.lock", "*/dvc.lock").stdout.split("\0")
    for name in sorted(filter(None, listed)):
        try:
            with open(os.path.join(repo, name), encoding="utf-8") as handle:
                out["dvc_files"][name] = handle.read()
        except OSError:
            pass

runs = set()
for base in filter(None, [repo, home]):
    for pattern in ("wandb/*run-*", "*/wandb/*run-*"):
        for path in glob.glob(os.path.join(base, pattern)):
            name = os.path.basename(path.rstrip("/"))
            if os.path.isdir(path) and name.count("-") >= 2:
                runs.add(name.rsplit("-", 1)[1])
out["wandb_runs"] = sorted(runs)
print(json.dumps(out))
"""


def facts_argv(repo: Repo | None) -> list[str]:
    return ["python3", "-c", FACTS_PY, repo_dir(repo) if repo else "", HOME_MOUNT]
