"""`devenv images`: the base images devenv builds on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from devenv.cli.context import Context, engine_option
from devenv.cli.display import ProgressDisplay, out_console

app = typer.Typer(no_args_is_help=True, help="Base images: bootstrap and list.")


@app.command()
def bootstrap(
    base: Annotated[str, typer.Option(help="the base recipe (images/NAME)")] = "cpu",
    engine: engine_option = None,
    force: Annotated[bool, typer.Option(help="make it again even if it exists")] = False,
) -> None:
    """Make the base image: from the pinned upstream if a registry answers, else from Debian packages."""
    from devenv.build.base import ensure_base, load_recipe

    context = Context(Path("devenv.yaml"), engine)
    with ProgressDisplay() as progress:
        made = ensure_base(context.client(), load_recipe(base), progress, force=force)
    out_console.print(f"{made.image} {made.digest} ({made.source})")


@app.command("ls")
def list_bases(engine: engine_option = None) -> None:
    """The base recipes and whether each base exists on the engine."""
    from devenv.build.base import available_recipes, find_base, load_recipe

    client = Context(Path("devenv.yaml"), engine).client()
    for name in available_recipes():
        recipe = load_recipe(name)
        found = find_base(client, recipe)
        state = f"{found.digest} ({found.source})" if found else "not made (`devenv images bootstrap`)"
        out_console.print(f"{name:6} python {recipe.python:5} {recipe.image_tag}  {state}")
