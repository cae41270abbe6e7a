"""The owner's dotfiles repository (`devenv dotfiles set URL`) cloned into each of their workspaces'
homes and its install script run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devenv.daemon.setup import StepContext


def run(context: StepContext) -> dict[str, Any] | None:
    """What this step found, kept on the record under setup["dotfiles"]; None when there is nothing to do."""
    return None
