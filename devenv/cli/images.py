"""`devenv images`: the base images devenv builds on, on the daemon's engines."""

from __future__ import annotations

import click

from devenv.cli import ui
from devenv.cli.clicktools import Group
from devenv.cli.projects import finished, on_option
from devenv.client import Client

app = Group("images", no_args_is_help=True, help="Base images: bootstrap and list.")


@app.command()
@click.option("--base", default="cpu", help="the base recipe (images/NAME)")
@on_option
@click.option("--force/--no-force", default=False, help="make it again even if it exists")
def bootstrap(base: str, on: str | None, force: bool) -> None:
    """Make the base image: from the pinned upstream if a registry answers, else from Debian packages."""
    with ui.ProgressDisplay() as progress:
        made = finished(Client().bootstrap(base, on=on, force=force), progress)["base"]
    ui.out_console().print(f"{made['image']} {made['digest']} ({made['source']})")


@app.command("ls")
@on_option
def list_bases(on: str | None) -> None:
    """The base recipes and whether each base exists on the engine."""
    for item in Client().bases(on=on)["items"]:
        state = f"{item['digest']} ({item['source']})" if item["digest"] else "not made (`devenv images bootstrap`)"
        ui.out_console().print(f"{item['recipe']:6} python {item['python']:5} {item['image']}  {state}")
