"""The project's code in the workspace: the folder the client uploaded with `up` (tracked and untracked
files minus .gitignore), placed into the home on the first start; owned by the code-upload work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devenv.daemon.setup import StepContext


def run(context: StepContext) -> dict[str, Any] | None:
    """What this step found, kept on the record under setup["code"]; None when there is nothing to do."""
    return None
