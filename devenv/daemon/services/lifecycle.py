"""hooks.create (once per home volume) and hooks.start (every start) run in the running workspace, as
dev, with the network on; their output streams to `devenv up`.

They run after the code, repo, data and dotfiles steps, in the project's folder (the clone, else the
uploaded code, else the home). Unlike those steps a failing hook fails the workspace: the record says
which step and command, with the output's tail; the container and home are kept so the person can look,
and the next start (`devenv start`, or `devenv up` with a fixed spec) runs the failed hook again.

hooks.create's marker (`versioning.hooks.MARKER`) lives in the home and is written only when every create
step succeeded: a new container on the same home (rebuild) does not run them again, a new home does.
Changed create steps are reported, never run again on their own: remove the marker and restart to run them.

No step holds the converge for ever: each has a limit (hooks.timeout, else 30m a create step and 10m a start
step), past which its processes are killed and the workspace fails as for a failing step; a server belongs in
a `{background: LINE}` start step, started detached (it ends with the container) and not waited for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from devenv.backends.base import HOME_MOUNT
from devenv.errors import HookFailed
from devenv.spec.models import Spec
from devenv.versioning import hooks
from devenv.versioning.scripts import repo_dir
from devenv.versioning.steps import StepResult

if TYPE_CHECKING:
    from devenv.daemon.services.setup import StepContext

RERUN = "to run them: `devenv exec {ws} -- rm ~/.devenv/hooks-created`, then `devenv stop {ws}` and `devenv start {ws}`"


def run(context: StepContext) -> dict[str, Any] | None:
    """What this step found, kept on the record under setup["hooks"]; None when there is nothing to do.

    A failure is returned (record["failed"]), not raised, so the other steps' results are stored too;
    the converger turns it into the workspace's failed state (`failure`)."""
    spec = context.spec
    if spec is None or not (spec.hooks.create or spec.hooks.start):
        return None
    if spec.repo is not None and not (context.setup.get("repo") or {}).get("ok"):
        context.events.record(
            context.ws.name,
            "setup",
            "hooks not run: the repo step failed first (they run at the next start that finds the clone)",
            actor="devenvd",
        )
        return {"status": "skipped", "ok": True, "failed": None, "at": time.time()}
    code = context.setup.get("code")
    if spec.repo is None and code and not code.get("ok"):
        context.events.record(
            context.ws.name,
            "setup",
            "hooks not run: the project's code was not placed (they run at the next start that places it)",
            actor="devenvd",
        )
        return {"status": "skipped", "ok": True, "failed": None, "at": time.time()}
    folder = project_folder(spec, context.setup)
    previous = context.setup.get("hooks") or {}
    record: dict[str, Any] = {"status": "ran", "ok": True, "failed": None, "folder": folder, "at": time.time()}
    phases = [("create", spec.hooks.create), ("start", spec.hooks.start)]
    for phase, steps in phases:
        if not steps:
            continue
        limit = spec.hooks.timeout or hooks.DEFAULT_LIMITS[phase]
        if phase == "create":
            record[phase] = _create(context, steps, folder, previous.get("create") or {}, limit)
        else:
            record[phase] = _phase(context, phase, steps, folder, limit)
        if record[phase].get("failed"):
            record.update(status="failed", ok=False, failed=record[phase]["failed"])
            return record
    return record


def project_folder(spec: Spec, setup: dict[str, Any]) -> str:
    """Where hooks run: the repo's clone, else the uploaded code's folder, else the home."""
    if spec.repo is not None:
        return repo_dir(spec.repo)
    return (setup.get("code") or {}).get("folder") or HOME_MOUNT


def failure(setup: dict[str, Any] | None) -> HookFailed | None:
    """The error a failed hook in this setup record makes: the step, its command, its exit and its last lines."""
    failed = ((setup or {}).get("hooks") or {}).get("failed")
    if not failed:
        return None
    lines = [line.strip() for line in str(failed.get("tail") or "").splitlines() if line.strip()]
    ends = f"; output ends: {' | '.join(lines[-3:])[-300:]}" if lines else ""
    return HookFailed(f"{failed['message']}{ends}", hint=failed.get("hint"))


def _create(
    context: StepContext, steps: list[hooks.HookStep], folder: str, previous: dict[str, Any], limit: int
) -> dict[str, Any]:
    digest = hooks.steps_hash(steps)
    ran = hooks.read_marker(context.backend, context.handle)
    if ran == digest:
        return {"status": "done", "hash": digest}
    if ran is not None:  # other steps ran in this home: said once, not run again on their own
        if previous.get("status") != "changed" or previous.get("hash") != digest:
            context.events.record(
                context.ws.name,
                "setup",
                "hooks.create changed since they ran in this home; not "
                "run again (" + RERUN.format(ws=context.ws.name) + ")",
                actor="devenvd",
            )
        return {"status": "changed", "hash": digest, "ran": ran}
    result = _phase(context, "create", steps, folder, limit)
    if not result.get("failed"):
        hooks.write_marker(context.backend, context.handle, digest)
    return {**result, "hash": digest}


def _phase(context: StepContext, phase: str, steps: list[hooks.HookStep], folder: str, limit: int) -> dict[str, Any]:
    """Each step in order, stopping at the first that fails or runs past `limit` seconds; one summary event
    when all ran (a background step counts as ran once started: an event says where its output goes)."""
    what, name = f"hooks.{phase}", context.ws.name
    began = time.monotonic()
    for index, step in enumerate(steps, 1):
        context.status(f"{what} step {index}/{len(steps)}: {hooks.describe(step)}")
        ended: list[hooks.HookRun] = []

        def run(
            line: Any, step: hooks.HookStep = step, index: int = index, ended: list[hooks.HookRun] = ended
        ) -> StepResult:
            log = hooks.log_path(phase, index)
            done = hooks.run_step(context.backend, context.handle, step, folder, line, limit=limit, log=log)
            ended.append(done)
            if done.code == 0:
                if hooks.background(step) is not None:
                    context.events.record(
                        name,
                        "setup",
                        f"{what} step {index} (`{hooks.describe(step)}`) runs in "
                        f"the background; its output: {log.replace(HOME_MOUNT, '~', 1)}",
                        actor="devenvd",
                    )
                return StepResult("present", "")  # "present": nothing to report yet (the summary event follows)
            command = done.failed_command or hooks.describe(step)
            ending = f"ran past its {hooks.limit_text(limit)} limit" if done.timed_out else f"exited {done.code}"
            hint = (
                (
                    "set a longer `hooks.timeout` in devenv.yaml, or start a server as `- background: LINE` under "
                    "hooks.start; then `devenv up`"
                )
                if done.timed_out
                else None
            )
            return StepResult(
                "failed",
                f"{what} step {index} (`{command}`) {ending}",
                hint=hint
                or f"change the step in devenv.yaml and `devenv up`, or `devenv start {name}` "
                "to run it again (the container and home are kept as they are)",
                output=done.tail(),
            )

        kept = context.step(what, run)
        if not kept["ok"]:
            return {
                "status": "failed",
                "steps": len(steps),
                "seconds": round(time.monotonic() - began, 3),
                "failed": {
                    "phase": phase,
                    "step": index,
                    "exit": ended[0].code if ended else None,
                    "message": kept["message"],
                    "hint": kept.get("hint"),
                    "tail": ended[0].tail() if ended else "",
                },
            }
    seconds = time.monotonic() - began
    plural = "s" if len(steps) != 1 else ""
    context.events.record(name, "setup", f"{what}: {len(steps)} step{plural} ran in {seconds:.1f} s", actor="devenvd")
    return {"status": "ran", "steps": len(steps), "seconds": round(seconds, 3)}
