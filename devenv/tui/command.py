"""`devenv tui` as a click command, for `devenv --help` and the CLI's own dispatch."""

from __future__ import annotations

import click

HELP = "Dashboard of workspaces in the terminal (Textual)."


@click.command("tui", help=HELP, short_help=HELP.rstrip("."))
def command() -> None:
    from devenv.tui import open_dashboard

    open_dashboard()
