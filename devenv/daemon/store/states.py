"""Workspace states and what the daemon wants them to be.

`desired` is what a person asked for (running, stopped, deleted); `state` is where the workspace
is on its way there. The converger moves state toward desired; the reconciler notices when the
engine disagrees (a vanished container is `lost`, an exited one `stopped`).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a workspace is (the record's `state`); a str, so the store and the wire hold its value."""

    PENDING = "pending"
    BUILDING = "building"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    FAILED = "failed"
    LOST = "lost"


class Desire(StrEnum):
    """What a person asked the workspace to be (the record's `desired`)."""

    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


# the names the daemon's modules use
PENDING, BUILDING, STARTING, RUNNING = State.PENDING, State.BUILDING, State.STARTING, State.RUNNING
STOPPING, STOPPED, DELETING, FAILED, LOST = State.STOPPING, State.STOPPED, State.DELETING, State.FAILED, State.LOST
STATES = tuple(State)
IN_PROGRESS = frozenset({PENDING, BUILDING, STARTING, STOPPING, DELETING})

DESIRE_RUNNING, DESIRE_STOPPED, DESIRE_DELETED = Desire.RUNNING, Desire.STOPPED, Desire.DELETED


HOOK_FAILED = "hook_failed"  # devenv.errors.HookFailed.code


def container_up(state: str, error_code: str | None) -> bool:
    """Whether the workspace's container runs: running, or failed in a lifecycle hook (its container is kept up so
    the person can get in and fix it). Access, exec, Jupyter, autostop and the reconciler treat both alike: a
    revoke must reach such a container as it reaches a running one."""
    return state == RUNNING or (state == FAILED and error_code == HOOK_FAILED)


def settled(desired: str, state: str) -> bool:
    """Whether the workspace has arrived (or given up): a waiting client can stop waiting."""
    if state in (FAILED, LOST):
        return True
    if desired == DESIRE_RUNNING:
        return state == RUNNING
    if desired == DESIRE_STOPPED:
        return state == STOPPED
    return False  # a delete settles when the record is gone
