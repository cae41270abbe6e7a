"""hooks.create (once per home volume) and hooks.start (every start) run in the running workspace, as
dev, with the network on; their output streams to `devenv up`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devenv.daemon.setup import StepContext


def run(context: StepContext) -> dict[str, Any] | None:
    """What this step found, kept on the record under setup["hooks"]; None when there is nothing to do."""
    return None
