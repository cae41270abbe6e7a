"""The setup steps a workspace gets after its container starts: clone, pull data, read its facts.

Each step runs inside the workspace through `backend.exec` and reports a StepResult instead of
raising for what the person can fix (a repo that cannot be cloned, a remote that does not answer):
the workspace still runs, and the result says what failed and how to fix it. Engine failures
(BackendError) do raise: they are the daemon's to handle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from devenv.backends.base import Backend, Handle
from devenv.errors import BackendError
from devenv.spec.models import Data, Repo
from devenv.versioning import scripts
from devenv.versioning.facts import Facts, parse_facts

OnLine = Callable[[str], None]
_TAIL = 2000  # characters of a failed step's output kept in its result


@dataclass(frozen=True)
class StepResult:
    status: str  # clone: cloned | present | blocked | failed; data: pulled | failed
    message: str
    hint: str | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("cloned", "present", "pulled")


def run_script(backend: Backend, handle: Handle, script: str, on_line: OnLine) -> tuple[int, str]:
    """Run a setup script as dev; each output line goes to `on_line` as it comes; (exit code, output)."""
    stream = backend.exec(handle, scripts.as_dev(script), user="root", workdir="/")
    output, pending = [], ""
    for _which, chunk in stream:
        text = chunk.decode(errors="replace")
        output.append(text)
        pending += text
        *lines, pending = re.split(r"[\r\n]", pending)
        for line in lines:
            if line.strip():
                on_line(line.rstrip())
    if pending.strip():
        on_line(pending.rstrip())
    return (stream.exit_code if stream.exit_code is not None else 1), "".join(output)


def _tail(output: str) -> str:
    lines = [line for line in re.split(r"[\r\n]", output) if line.strip()]
    return "\n".join(lines)[-_TAIL:]


def _clone_hint(output: str, repo: Repo) -> str:
    lowered = output.lower()
    if any(words in lowered for words in ("authentication failed", "could not read username")) or re.search(
        r"returned error: 40[13]\b", lowered
    ):
        if repo.token_secret:
            return (
                f"check the token in secret {repo.token_secret} (`devenv secret set {repo.token_secret}`), "
                "then `devenv data pull WS` (it clones what is missing)"
            )
        return "the repository needs credentials: set `repo: token_secret: NAME` and `devenv secret set NAME`"
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
        return "the workspace cannot reach the repository's host: check `repo: url:` and the network"
    if "not found" in lowered or "does not exist" in lowered or "not appear to be a git repository" in lowered:
        return "check `repo: url:` in devenv.yaml"
    return "fix `repo:` in devenv.yaml and `devenv up` again, or `devenv data pull WS` to retry"


def clone(backend: Backend, handle: Handle, repo: Repo, on_line: OnLine, *, ref: str | None = None) -> StepResult:
    code, output = run_script(backend, handle, scripts.clone_script(repo, ref=ref), on_line)
    where = scripts.repo_dir(repo)
    if code == 0:
        return StepResult("cloned", f"cloned {repo.url} into {where}")
    if code == scripts.CLONE_PRESENT:
        return StepResult("present", f"{where} is a clone already (not cloned again)")
    if code == scripts.CLONE_BLOCKED:
        return StepResult(
            "blocked",
            f"{where} holds files but no git clone; left as it is",
            hint="move them away, or set `repo: path:` to another folder; then `devenv data pull WS`",
            output=_tail(output),
        )
    if code == scripts.CHECKOUT_FAILED:
        wanted = ref or repo.ref
        return StepResult(
            "failed",
            f"cloned {repo.url}, but {wanted!r} is not in it; nothing was kept",
            hint="check `repo: ref:` in devenv.yaml",
            output=_tail(output),
        )
    return StepResult(
        "failed",
        f"could not clone {repo.url} (git exited {code}); nothing was kept",
        hint=_clone_hint(output, repo),
        output=_tail(output),
    )


def _data_hint(output: str, data: Data) -> str:
    lowered = output.lower()
    if any(
        words in lowered
        for words in (
            "no credentials",
            "unable to locate credentials",
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "access denied",
            "forbidden",
        )
    ):
        return "the remote refused the credentials: list them under `secrets:` and set them with `devenv secret set`"
    if any(
        words in lowered
        for words in (
            "unable to connect",
            "could not connect",
            "connection refused",
            "endpointconnectionerror",
            "name or service not known",
            "temporary failure in name resolution",
            "timed out",
        )
    ):
        return (
            f"the DVC remote {data.endpoint or data.remote} does not answer from the workspace: check it runs "
            "and `data:` in devenv.yaml; then `devenv data pull`"
        )
    if "does not exist as an output" in lowered or "no such file or directory: '" in lowered:
        return (
            "check `data: paths:` in devenv.yaml: each must be a DVC-tracked path, or a folder holding "
            ".dvc files; then `devenv data pull`"
        )
    if "missing" in lowered or "not found" in lowered or "does not exist" in lowered:
        return "the remote lacks some data: `dvc push` it from where it was added, then `devenv data pull`"
    return "fix `data:` in devenv.yaml, then `devenv data pull`"


def pull_data(backend: Backend, handle: Handle, repo: Repo, data: Data, on_line: OnLine) -> StepResult:
    code, output = run_script(backend, handle, scripts.dvc_pull_script(repo, data), on_line)
    if code == 0:
        return StepResult("pulled", f"pulled DVC data from {data.remote}")
    if code == scripts.DATA_NO_REPO:
        return StepResult(
            "failed",
            f"no clone at {scripts.repo_dir(repo)} to pull data into",
            hint="the repo step failed first: see its error",
            output=_tail(output),
        )
    return StepResult(
        "failed",
        f"could not pull DVC data from {data.remote} (dvc exited {code})",
        hint=_data_hint(output, data),
        output=_tail(output),
    )


def read_facts(backend: Backend, handle: Handle, repo: Repo | None) -> Facts:
    stream = backend.exec(handle, scripts.facts_argv(repo), user="dev", workdir="/")
    out = b"".join(chunk for which, chunk in stream if which == "stdout")
    if stream.exit_code:
        raise BackendError(f"reading the workspace's git and data facts failed (exit {stream.exit_code})")
    return parse_facts(out.decode())
