"""The terminal UI (Textual). Only the click command lives here, so `devenv --help` stays light."""

from __future__ import annotations

import click

HELP = "Dashboard of workspaces in the terminal (Textual)."


@click.command("tui", help=HELP, short_help=HELP.rstrip("."))
def command() -> None:
    from devenv.tui.app import run

    run()
