"""`devenv images`: the base images devenv builds on."""

from __future__ import annotations

from pathlib import Path

import click

from devenv.cli import ui
from devenv.cli.clicktools import Group
from devenv.cli.context import Context, engine_option

app = Group("images", no_args_is_help=True, help="Base images: bootstrap and list.")


@app.command()
@click.option("--base", default="cpu", help="the base recipe (images/NAME)")
@engine_option
@click.option("--force/--no-force", default=False, help="make it again even if it exists")
def bootstrap(base: str, engine: str | None, force: bool) -> None:
    """Make the base image: from the pinned upstream if a registry answers, else from Debian packages."""
    from devenv.build.base import ensure_base, load_recipe

    context = Context(Path("devenv.yaml"), engine)
    with ui.ProgressDisplay() as progress:
        made = ensure_base(context.client(), load_recipe(base), progress, force=force)
    ui.out_console().print(f"{made.image} {made.digest} ({made.source})")


@app.command("ls")
@engine_option
def list_bases(engine: str | None) -> None:
    """The base recipes and whether each base exists on the engine."""
    from devenv.build.base import available_recipes, find_base, load_recipe

    client = Context(Path("devenv.yaml"), engine).client()
    for name in available_recipes():
        recipe = load_recipe(name)
        found = find_base(client, recipe)
        state = f"{found.digest} ({found.source})" if found else "not made (`devenv images bootstrap`)"
        ui.out_console().print(f"{name:6} python {recipe.python:5} {recipe.image_tag}  {state}")
