"""The scripts of a spec's lifecycle hooks (`hooks.create`, `hooks.start`), run in the workspace as dev.

One exec per step: a step is a shell line, or a group of named lines run at once (each output line
prefixed with its name, every exit code checked), so a failure names the step and the command.
`hooks.create` runs once per home volume: a marker in the home holds the hash of the steps that ran.

A step never holds the workspace's converge for ever: it runs under coreutils `timeout` (its whole process
group is killed past its limit, KILL 10 s after TERM), and a `{background: LINE}` step (a server) is started
detached in its own session and not waited for: it ends with the container. Each step's output is kept in
~/.devenv/hooks/<phase>-<n>.log (the latest run's).
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
BACKGROUND = "background"  # the single key of a step started detached and not waited for
LOG_DIR = f"{HOME_MOUNT}/.devenv/hooks"
DEFAULT_LIMITS = {"create": 30 * 60, "start": 10 * 60}  # seconds, when hooks.timeout is not set
_KILL_AFTER = 10  # seconds between TERM and KILL for a step past its limit
_RAN_PAST = re.compile(r"^devenv-hook: ran past (\d+)s$", re.MULTILINE)


@dataclass(frozen=True)
class HookRun:
    """How one step ended: its exit code, its output, and (for a group) the first command that failed."""

    code: int
    output: str
    failed_command: str | None = None
    timed_out: bool = False

    def tail(self, lines: int = _TAIL_LINES) -> str:
        kept = [line for line in re.split(r"[\r\n]", self.output) if line.strip()]
        return "\n".join(kept[-lines:])


def steps_hash(steps: list[HookStep]) -> str:
    """What the marker holds: the create steps as written (a changed step makes another hash)."""
    return hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()


def background(step: HookStep) -> str | None:
    """The shell line of a `{background: LINE}` step, else None (a shell line, or a parallel group)."""
    if isinstance(step, dict) and list(step) == [BACKGROUND]:
        return step[BACKGROUND]
    return None


def log_path(phase: str, index: int) -> str:
    """Where a background step's output goes (overwritten at each start: the latest run's)."""
    return f"{LOG_DIR}/{phase}-{index}.log"


def limit_text(seconds: int) -> str:
    """A limit as a person writes it: 10m, 30m, 1h30m, 45s."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


def describe(step: HookStep, limit: int = 60) -> str:
    """A step as the person wrote it, on one line, shortened: `pip install -e .`, `a: make; b: npm ci`."""
    line = background(step)
    if line is not None:
        text = line
    else:
        text = step if isinstance(step, str) else "; ".join(f"{name}: {line}" for name, line in step.items())
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def step_script(step: HookStep, folder: str, *, limit: int, log: str) -> str:
    """The step under its time limit, or (a background step) started detached; its output goes to `log`.

    The step's own script runs in a bash of its own: `timeout` makes that bash's process group its own and
    signals all of it; elapsed seconds tell a step killed at its limit from one that exited 124 itself.
    The output is written to `log` and followed from there (`tail --pid`) rather than piped to the exec: a
    process the step left running (`server &`) holds the file, not the exec's stream, so the step ends
    when its shell does. `rm` first: such a process from the last start writes to the old file."""
    inner, quoted = _inner_script(step, folder), shlex.quote(log)
    if background(step) is not None:
        return _background_script(inner, log)
    return (
        "\n".join(
            [
                f"mkdir -p {shlex.quote(LOG_DIR)} && rm -f {quoted} && : > {quoted} || exit 1",
                "_devenv_began=$SECONDS",
                f"timeout --kill-after={_KILL_AFTER}s {limit}s bash -c {shlex.quote(inner)}"
                f" >> {quoted} 2>&1 < /dev/null &",
                "_devenv_pid=$!",
                f'tail -s 0.1 -n +1 -f --pid="$_devenv_pid" {quoted}',
                'wait "$_devenv_pid"; code=$?',
                f'if {{ [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; }}'
                f" && [ $((SECONDS - _devenv_began)) -ge {limit} ]; then",
                f'  echo "devenv-hook: ran past {limit}s"',
                "fi",
                'exit "$code"',
            ]
        )
        + "\n"
    )


def _background_script(inner: str, log: str) -> str:
    """Started in a session of its own, output to `log`; its pid in a file beside, so the next setup run
    in the same container (`devenv up` with a changed spec, `devenv data pull`) ends it before starting it
    again (one server). The env marker makes sure the pid is still that step's, not a
    reused one in a restarted container."""
    quoted, pidfile = shlex.quote(log), shlex.quote(log.removesuffix(".log") + ".pid")
    mark = shlex.quote(f"DEVENV_HOOK_STEP={log.rsplit('/', 1)[-1].removesuffix('.log')}")
    return (
        "\n".join(
            [
                f"mkdir -p {shlex.quote(LOG_DIR)} && rm -f {quoted} || exit 1",
                f"old=$(cat {pidfile} 2>/dev/null); old=${{old//[^0-9]/}}",
                f"if [ -n \"$old\" ] && tr '\\0' '\\n' < /proc/$old/environ 2>/dev/null | grep -qx {mark}; then",
                '  echo "devenv-hook: ending its last run (pid $old)"',
                '  kill -TERM -- "-$old" 2>/dev/null',
                '  for _ in $(seq 50); do kill -0 -- "-$old" 2>/dev/null || break; sleep 0.2; done',
                '  kill -KILL -- "-$old" 2>/dev/null',
                "fi",
                f"env {mark} setsid nohup bash -c {shlex.quote(inner)} > {quoted} 2>&1 < /dev/null &",
                f"echo $! > {pidfile}",
                f'echo "devenv-hook: started in the background (pid $!), its output in {log}"',
            ]
        )
        + "\n"
    )


def _inner_script(step: HookStep, folder: str) -> str:
    """The step in `folder`, with the workspace's env sourced as login shells source it."""
    lines = [
        f"if [ -r {WORKSPACE_ENV} ]; then . {WORKSPACE_ENV}; fi",
        f"cd {shlex.quote(folder)} || exit 1",
    ]
    line = background(step)
    if isinstance(step, str) or line is not None:
        return "\n".join([*lines, line if line is not None else str(step)]) + "\n"
    lines += [
        "_devenv_one() {",
        '  bash -c "$2" 2>&1 | while IFS= read -r line || [ -n "$line" ]; do printf \'[%s] %s\\n\' "$1" "$line"; done',
        '  return "${PIPESTATUS[0]}"',
        "}",
        "pids=(); names=()",
    ]
    for name, command in step.items():
        lines.append(
            f"_devenv_one {shlex.quote(name)} {shlex.quote(command)} & pids+=($!); names+=({shlex.quote(name)})"
        )
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


def run_step(
    backend: Backend,
    handle: Handle,
    step: HookStep,
    folder: str,
    on_line: Callable[[str], None],
    *,
    limit: int,
    log: str,
) -> HookRun:
    """Run one step as dev, its lines streamed to `on_line`; engine failures (BackendError) raise.

    `limit`: seconds before the step's processes are killed (HookRun.timed_out); a background step's
    output goes to `log` and the run returns as soon as it is started."""
    code, output = run_script(backend, handle, step_script(step, folder, limit=limit, log=log), on_line)
    if code and _RAN_PAST.search(output) is not None:
        return HookRun(code, _RAN_PAST.sub("", output), timed_out=True)
    failed = None
    if code and isinstance(step, dict) and background(step) is None:
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
        raise BackendError(
            f"writing {MARKER} in {handle.container} failed (exit {stream.exit_code})",
            hint="is the home volume full? `devenv exec WS -- df -h ~`",
        )
