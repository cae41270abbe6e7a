"""`devenv dotfiles [set URL | rm]`: your dotfiles repository, cloned into ~/.dotfiles of each of your
workspaces on its first start and its install script run (as Codespaces and Coder do).

The setting is the daemon's, one per person: `devenv dotfiles` shows yours, and no one else's.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING

import click

from devenv.cli.clicktools import Group, argument
from devenv.client import Client

if TYPE_CHECKING:
    from devenv import wire


@click.group(
    "dotfiles",
    cls=Group,
    invoke_without_command=True,
    help="Your dotfiles repository, cloned into ~/.dotfiles of your workspaces on their first start.",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
@click.pass_context
def app(ctx: click.Context, as_json: bool) -> None:
    """Show your dotfiles repository when given no subcommand."""
    if ctx.invoked_subcommand is None:
        _show(Client().dotfiles(), as_json)


def _show(setting: wire.DotfilesView, as_json: bool) -> None:
    if as_json:
        json.dump(setting, sys.stdout, indent=2)
        print()
        return
    if not setting.get("url"):
        click.echo("no dotfiles repository set (`devenv dotfiles set URL` sets one)")
        return
    click.echo(f"url      {setting['url']}")
    click.echo(f"install  {setting.get('install') or 'found by name (install.sh, install, bootstrap.sh, ...)'}")
    if updated := setting.get("updated_at"):
        when = dt.datetime.fromtimestamp(updated, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"set      {when}")
    if setting.get("note"):
        click.echo(f"note: {setting['note']}", err=True)


@app.command("set")
@argument("url", help="the repository's clone URL: https://github.com/you/dotfiles.git (public; no credentials)")
@click.option(
    "--install",
    "install",
    metavar="PATH",
    help="its install script, relative to the repository (default: the first of install.sh, install, "
    "bootstrap.sh, bootstrap, script/bootstrap, setup.sh, setup, script/setup)",
)
def set_dotfiles(url: str, install: str | None) -> None:
    """Set your dotfiles repository: cloned into each of your workspaces that has no ~/.dotfiles yet, at its next
    start (a spec opts out with `dotfiles: false`)."""
    setting = Client().set_dotfiles(url, install=install)
    click.echo(
        f"dotfiles set to {setting['url']}" + (f" (install: {setting['install']})" if setting.get("install") else "")
    )
    if setting.get("note"):
        click.echo(f"note: {setting['note']}", err=True)


@app.command("rm")
def remove_dotfiles() -> None:
    """Forget your dotfiles repository (clones already in workspaces stay where they are)."""
    removed = Client().remove_dotfiles().get("removed")
    click.echo("dotfiles repository removed" if removed else "no dotfiles repository was set")
