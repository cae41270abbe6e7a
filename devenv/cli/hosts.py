"""`devenv host add|ls|rm`: Docker engines on other machines, reached over SSH, to run workspaces on.

On first contact the host's key fingerprint is shown and must be confirmed (at the prompt, or with
`--trust SHA256:...` where there is no terminal), as ssh itself asks; a changed key is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from devenv.cli.clicktools import PATH, Group, argument
from devenv.client import Client
from devenv.errors import HostKeyUnknown, UsageError

if TYPE_CHECKING:
    from devenv import wire

app = Group("host", no_args_is_help=True, help="Docker hosts over SSH that workspaces run on (`devenv up --on NAME`).")


def _read_identity(path: Path | None) -> tuple[Path, str]:
    chosen = path or Path.home() / ".ssh" / "id_ed25519"
    try:
        return chosen, chosen.read_text()
    except OSError as exc:
        raise UsageError(
            f"cannot read the identity {chosen} ({exc.strerror})",
            hint="pass the private key the host accepts with --identity FILE",
        ) from None


@app.command("add")
@argument("name", help="the host's name for `--on` and `backend:` (lowercase, digits, dashes)")
@argument("url", help="ssh://USER@HOST[:PORT]")
@click.option(
    "--identity",
    "-i",
    type=PATH,
    help="private key the host accepts (default: ~/.ssh/id_ed25519); the daemon keeps it encrypted",
)
@click.option(
    "--trust", metavar="SHA256:...", help="the host key's fingerprint, checked on the host, for adding without a prompt"
)
def add(name: str, url: str, identity: Path | None, trust: str | None) -> None:
    """Add a machine with a Docker engine, after checking its host key, the login and the engine."""
    _, key_text = _read_identity(identity)
    client = Client()
    try:
        added = client.add_host(name, url, key_text, trust=trust)
    except HostKeyUnknown as unknown:
        fingerprint = str(unknown.data.get("fingerprint") or "")
        if trust is not None or not sys.stdin.isatty() or not fingerprint:
            raise
        click.echo(unknown.message, err=True)
        click.echo("Check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", err=True)
        if not click.confirm(f"Trust {fingerprint} for {name}?", default=False, err=True):
            raise UsageError(f"host {name} not added: its key was not confirmed") from None
        added = client.add_host(name, url, key_text, trust=fingerprint)
    facts = added["facts"]
    click.echo(
        f"added {name} ({added['url']}): Docker {facts.get('engine_version', '?')}, {_gpus(facts)}, "
        f"{_size(facts.get('disk_free_bytes'))} free"
    )
    click.echo(f"run a workspace there: devenv up --on {name}")


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("B", "kB") else f"{size:.1f} {unit}"
        size /= 1000
    return "?"


def _gpus(facts: wire.HostFactsView) -> str:
    gpus = facts.get("gpus") or []
    if not gpus:
        return facts.get("gpu_note") or "no GPU"
    names = sorted({gpu["name"] for gpu in gpus})
    held = [f"{gpu['index']}:{gpu['workspace']}" for gpu in gpus if gpu.get("workspace")]
    text = f"{facts.get('free_gpus', 0)}/{len(gpus)} free {', '.join(names)}"
    return text + (f" (held: {', '.join(held)})" if held else "")


@app.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
def list_hosts(as_json: bool) -> None:
    """Every host: reachable or why not, Docker version, GPUs and who holds them, free disk, workspaces."""
    items = Client().hosts()
    if as_json:
        json.dump(items, sys.stdout, indent=2)
        print()
        return
    rows = [("NAME", "URL", "STATE", "DOCKER", "GPUS", "DISK FREE", "WORKSPACES")]
    problems = []
    for item in items:
        facts = item["facts"]
        instance = item.get("instance")
        state = "ok" if item["reachable"] else "unreachable"
        if instance:  # a cloud instance devenv runs for one workspace
            price = instance.get("price_per_hour")
            state = f"{instance['state']} {instance['type']} {instance['zone']}" + (f" ${price:.3f}/h" if price else "")
        elif item.get("error"):
            problems.append(f"{item['name']}: {item['error']}")
        rows.append(
            (
                item["name"],
                item.get("url") or "-",
                state,
                facts["engine_version"] if facts else "-",
                _gpus(facts) if facts else "-",
                _size(facts["disk_free_bytes"]) if facts else "-",
                str(item.get("workspaces", 0)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for line in problems:
        click.echo(line, err=True)


@app.command("rm")
@argument("name", help="the host's name")
def remove(name: str) -> None:
    """Forget a host and its pinned key (its workspaces must be removed first)."""
    Client().remove_host(name)
    click.echo(f"removed host {name}")
