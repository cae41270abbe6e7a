"""The `devenv` console script (and `python -m devenv`).

The dashboard (`devenv tui`, or `devenv` alone on a terminal) starts without loading click and the
command tree: start-up time is the TUI's first figure. Everything else goes to the CLI
(devenv.cli.main), which renders errors in one place; piped or scripted, bare `devenv` prints help.
"""

from __future__ import annotations

import sys


def wants_dashboard(args: list[str]) -> bool:
    return args == ["tui"] or (not args and sys.stdin.isatty() and sys.stdout.isatty())


def main() -> None:
    args = sys.argv[1:]
    if not wants_dashboard(args):
        from devenv.cli.main import main as cli

        cli()
        return
    try:
        from devenv.tui import open_dashboard  # not "launch": devenv.tui.launch is the wizard module

        open_dashboard()
    except (Exception, KeyboardInterrupt) as error:  # shown as the CLI shows any error: no traceback
        from devenv.cli.main import fail

        fail(error)
