"""The scripts of a spec's lifecycle hooks (`hooks.create`, `hooks.start`), run in the workspace as dev.

One exec per step: a step is a shell line, or a group of named lines run at once (each output line
prefixed with its name, every exit code checked), so a failure names the step and the command.
`hooks.create` runs once per home volume: a marker in the home holds the hash of the steps that ran.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from devenv.backends.base import HOME_MOUNT, Backend, Handle
from devenv.errors import BackendError
from devenv.versioning.scripts import WORKSPACE_ENV
from devenv.versioning.steps import run_script

HookStep = str | dict[str, str]
MARKER = f"{HOME_MOUNT}/.devenv/hooks-created"  # the hash of the create steps that succeeded in this home
_GROUP_FAILED = re.compile(r"^devenv-hook: (\S+) exited (\d+)$", re.MULTILINE)
_TAIL_LINES = 20


@dataclass(frozen=True)
class HookRun:
    """How one step ended: its exit code, its output, and (for a group) the first command that failed."""

    code: int
    output: str
    failed_command: str | None = None

    def tail(self, lines: int = _TAIL_LINES) -> str:
        kept = [line for line in re.split(r"[\r\n]", self.output) if line.strip()]
        return "\n".join(kept[-lines:])


def steps_hash(steps: list[HookStep]) -> str:
    """What the marker holds: the create steps as written (a changed step makes another hash)."""
    return hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()


def describe(step: HookStep, limit: int = 60) -> str:
    """A step as the person wrote it, on one line, shortened: `pip install -e .`, `a: make; b: npm ci`."""
    text = step if isinstance(step, str) else "; ".join(f"{name}: {line}" for name, line in step.items())
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def step_script(step: HookStep, folder: str) -> str:
    """The step in `folder`, with the workspace's env sourced as login shells source it."""
    lines = [
        f"if [ -r {WORKSPACE_ENV} ]; then . {WORKSPACE_ENV}; fi",
        f"cd {shlex.quote(folder)} || exit 1",
    ]
    if isinstance(step, str):
        return "\n".join([*lines, step]) + "\n"
    lines += [
        "_devenv_one() {",
        '  bash -c "$2" 2>&1 | while IFS= read -r line || [ -n "$line" ]; do printf \'[%s] %s\\n\' "$1" "$line"; done',
        '  return "${PIPESTATUS[0]}"',
        "}",
        "pids=(); names=()",
    ]
    for name, command in step.items():
        lines.append(f"_devenv_one {shlex.quote(name)} {shlex.quote(command)} & pids+=($!); "
                     f"names+=({shlex.quote(name)})")
    lines += [
        "status=0",
        'for i in "${!pids[@]}"; do',
        '  wait "${pids[$i]}"; code=$?',
        '  if [ "$code" -ne 0 ]; then',
        '    echo "devenv-hook: ${names[$i]} exited $code"',
        '    if [ "$status" -eq 0 ]; then status=$code; fi',
        "  fi",
        "done",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def run_step(backend: Backend, handle: Handle, step: HookStep, folder: str,
             on_line: Callable[[str], None]) -> HookRun:
    """Run one step as dev, its lines streamed to `on_line`; engine failures (BackendError) raise."""
    code, output = run_script(backend, handle, step_script(step, folder), on_line)
    failed = None
    if code and isinstance(step, dict):
        found = _GROUP_FAILED.search(output)
        if found is not None and found.group(1) in step:
            failed = f"{found.group(1)}: {step[found.group(1)]}"
    return HookRun(code, output, failed)


def read_marker(backend: Backend, handle: Handle) -> str | None:
    """The hash of the create steps that ran in this home, or None when they never did."""
    stream = backend.exec(handle, ["cat", MARKER], user="dev")
    out = b"".join(chunk for which, chunk in stream if which == "stdout")
    return out.decode(errors="replace").strip() or None if stream.exit_code == 0 else None


def write_marker(backend: Backend, handle: Handle, digest: str) -> None:
    """Written only after every create step succeeded: a failed one runs again at the next start."""
    folder = MARKER.rsplit("/", 1)[0]
    stream = backend.exec(handle, ["sh", "-c", f"mkdir -p {folder}; echo {digest} > {MARKER}"], user="dev")
    for _chunk in stream:
        pass
    if stream.exit_code:
        raise BackendError(f"writing {MARKER} in {handle.container} failed (exit {stream.exit_code})",
                           hint="is the home volume full? `devenv exec WS -- df -h ~`")
