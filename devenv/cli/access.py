"""`devenv access grant|ls|revoke` and `devenv jupyter`: who reaches a workspace, and how they get in."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import click

from devenv.cli.clicktools import Group, argument, command
from devenv.client import Client

app = Group("access", no_args_is_help=True, help="Who may reach a workspace by SSH and JupyterLab.")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
@argument("name", help="workspace")
@argument("person", help="who: a token's name, or the daemon's own user")
@click.option("--ssh", is_flag=True, help="SSH (and `devenv exec`)")
@click.option("--jupyter", is_flag=True, help="JupyterLab through devenv's proxy")
@click.option("--ttl", help="ends by itself after this long: 90s, 30m, 4h, 2d (default: until revoked)")
@click.option(
    "--share-secrets",
    is_flag=True,
    help="also place your own secrets in the workspace while it is shared (default: team secrets only)",
)
def grant(name: str, person: str, ssh: bool, jupyter: bool, ttl: str | None, share_secrets: bool) -> None:
    """Let PERSON reach workspace NAME (with neither flag: both SSH and JupyterLab).

    PERSON works there as dev, in your home: they can read and change your files there and what you
    run there. Your own secrets leave the workspace while it is shared, unless --share-secrets.
    """
    if not ssh and not jupyter:
        ssh = jupyter = True
    granted = Client().grant(name, person, ssh=ssh, jupyter=jupyter, ttl=ttl, share_secrets=share_secrets)
    what = " and ".join(kind for kind in ("ssh", "jupyter") if granted[kind])
    until = f" until {_when(granted['expires_at'])}" if granted["expires_at"] else ""
    click.echo(f"{person} may reach {name} by {what}{until}")
    if share_secrets and not granted.get("share_secrets"):
        click.echo(
            "warning: this daemon does not share secrets with grantees yet; only team secrets are placed", err=True
        )
    elif not share_secrets:
        click.echo("your own secrets are not placed in it while it is shared (team secrets are)", err=True)


@app.command()
@argument("name", help="workspace")
@argument("person", help="whose access ends")
def revoke(name: str, person: str) -> None:
    """End PERSON's access to NAME now: new logins refused, live SSH and Jupyter sessions closed."""
    Client().revoke(name, person)
    click.echo(f"{person} no longer reaches {name}; their SSH sessions and Jupyter connections there are closed")


@app.command("ls")
@argument("name", help="workspace")
@click.option("--all", "ended", is_flag=True, help="also ended grants (revoked, expired)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
def list_access(name: str, ended: bool, as_json: bool) -> None:
    """Who may reach workspace NAME: its owner, and each grant with what it allows and until when."""
    answer = Client().access(name, ended=ended)
    if as_json:
        json.dump(answer, sys.stdout, indent=2)
        print()
        return
    rows = [("PERSON", "SSH", "JUPYTER", "UNTIL", "GRANTED BY", "ENDED")]
    rows.append((answer["owner"], "yes", "yes", "(owner)", "-", "-"))
    for item in answer["grants"]:
        ended_text = f"{_when(item['ended_at'])} by {item['ended_by']}" if item["ended_at"] else "-"
        rows.append(
            (
                item["person"],
                "yes" if item["ssh"] else "no",
                "yes" if item["jupyter"] else "no",
                _when(item["expires_at"]) if item["expires_at"] else "revoked" if item["ended_at"] else "-",
                item["granted_by"],
                ended_text,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@command("jupyter")
@argument("name", help="workspace")
@click.option("--no-browser", is_flag=True, help="print the link only")
def jupyter(name: str, no_browser: bool) -> None:
    """Open workspace NAME's JupyterLab in the browser, through devenv's proxy.

    The link works once, within a minute; it leaves a session cookie and lands on a clean URL.
    """
    link = Client().jupyter_login(name)
    click.echo(link["url"])
    click.echo(f"(single use, for {int(link['expires_in'])} s; then bookmark {link['clean_url']})", err=True)
    if not no_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"):
        import webbrowser

        webbrowser.open(link["url"])
