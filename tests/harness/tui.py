"""Helpers for Pilot tests of the TUI: wait for a condition, make workspaces on a served fake daemon."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot

from devenv.client import Client
from devenv.testing.daemon import project_upload


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Let the app run until `condition` holds; fail saying `what` did not happen."""
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    assert condition(), f"timed out waiting for {what}"


def make_workspaces(client: Client, folder: Path, *names: str) -> None:
    """Running workspaces from the minimal template (with a fake lock), one project folder each."""
    for name in names:
        frames = list(client.up(project_upload(folder / f"p-{name}", name=name), name=name))
        assert frames[-1]["workspace"]["state"] == "running", frames[-1]


def messages(app: App[Any]) -> list[str]:
    """The notifications the app has shown (and not yet expired)."""
    return [notification.message for notification in app._notifications]
