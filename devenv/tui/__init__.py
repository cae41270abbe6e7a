"""The terminal UI (Textual). Light on purpose: `devenv tui` starts here without click or the CLI.

`open_dashboard` asks the daemon for the list on a thread first, so that answer comes while Textual imports.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future

    from devenv import wire
    from devenv.client import Client

LIST_LIMIT = 1000  # the dashboard shows this many workspaces


def open_dashboard() -> None:
    """Run the dashboard in this terminal until the user quits."""
    from concurrent.futures import Future

    from devenv.client import Client

    client = Client()
    first: Future[wire.WorkspacePage] = Future()
    threading.Thread(target=_fetch, args=(client, first), daemon=True, name="first list").start()
    from devenv.tui.app import run  # Textual's import (~0.2 s) overlaps the daemon's first answer

    run(client, first)


def _fetch(client: Client, first: Future[wire.WorkspacePage]) -> None:
    try:
        first.set_result(client.workspaces(limit=LIST_LIMIT))
    except BaseException as error:  # handed to the dashboard's first poll, which shows it
        first.set_exception(error)
