"""`devenv secret set|ls|rm`: values the daemon keeps encrypted and hands to workspaces when they start.

A value is read from a prompt that does not echo, or from stdin when it is not a terminal (so it
never sits in the shell's history or in `ps`), and is never printed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys

import click

from devenv.cli.clicktools import Group, argument
from devenv.client import Client
from devenv.errors import UsageError

app = Group(
    "secret",
    no_args_is_help=True,
    help="Secrets (API keys, tokens) kept encrypted by the daemon and given to workspaces at start.",
)

_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")  # the daemon checks too; this spares typing a value in vain
_team_option = click.option("--team", is_flag=True, help="the team's secret (setting or removing one takes an admin)")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_value(name: str) -> str:
    """From a hidden prompt (asked twice) on a terminal, else all of stdin less one trailing newline."""
    if sys.stdin.isatty():
        return click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True, prompt_suffix=": ")
    try:
        value = sys.stdin.read()
    except UnicodeDecodeError:
        raise UsageError(f"the value of {name} on stdin is not UTF-8 text") from None
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")


@app.command("set")
@argument("name", help="env-var style: A-Z, 0-9 and _, like WANDB_API_KEY")
@_team_option
def set_secret(name: str, team: bool) -> None:
    """Set secret NAME from a hidden prompt, or from stdin: `devenv secret set WANDB_API_KEY < key.txt`."""
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a secret name", hint="use env-var style: A-Z, 0-9 and '_', like WANDB_API_KEY"
        )
    value = _read_value(name)
    if not value:
        raise UsageError(
            f"the value of {name} is empty; nothing was set",
            hint=f"pipe it in (`devenv secret set {name} < file`) or type it at the prompt",
        )
    Client().set_secret(name, value, team=team)
    click.echo(f"{name} set for the team" if team else f"{name} set (yours only)")


@app.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
def list_secrets(as_json: bool) -> None:
    """Your secrets and the team's: names, scope, and who set them when; never values."""
    items = Client().secrets()
    if as_json:
        json.dump(items, sys.stdout, indent=2)
        print()
        return
    rows = [("NAME", "SCOPE", "UPDATED", "BY")]
    rows += [(item["name"], item["scope"], _when(item["updated_at"]), item["updated_by"]) for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@app.command("rm")
@argument("name", help="the secret's name")
@_team_option
def remove_secret(name: str, team: bool) -> None:
    """Remove secret NAME (yours, or with --team the team's); a running workspace keeps it until it restarts."""
    Client().remove_secret(name, team=team)
    click.echo(f"removed the team's {name}" if team else f"removed {name}")
