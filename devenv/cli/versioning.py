"""`devenv status`, `devenv data pull`, `devenv snapshot` and `devenv snapshots`: what a workspace's
code and data are, and records to make it again (`devenv up --from-snapshot ID`)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from devenv.cli.clicktools import Group, argument, command
from devenv.client import Client
from devenv.errors import DevenvError, error_from_payload


def _json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


def _short(value: str | None, size: int = 12) -> str:
    return (value or "-")[:size]


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _mark(ok: bool | None) -> str:
    return "ok" if ok else "FAILED"


@command("status")
@argument("name", help="workspace")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
def status(name: str, as_json: bool) -> None:
    """What workspace NAME is pinned to: image, lock, clone (branch, commit, dirty), data, secrets."""
    answer = Client().status(name)
    if as_json:
        _json(answer)
        return
    out = click.echo
    reason = f" ({answer['reason']})" if answer.get("reason") else ""
    out(f"{answer['name']}: {answer['state']}{reason}")
    out(f"  image      {answer.get('image') or '-'}  hash {_short(answer.get('image_hash'))}")
    out(f"  lock       {_short(answer.get('lock_hash'))}   base {_short(answer.get('base_digest'), 19)}")
    if answer.get("image_id"):
        when = answer.get("verified_at")
        proof = (
            f"verified {when.replace('T', ' ').replace('Z', ' UTC')}"
            if when
            else "not verified (`devenv verify` in the project folder rebuilds it and compares)"
        )
        out(f"  runs       {_short(answer['image_id'], 19)}  {proof}")
    if answer.get("pins", {}).get("snapshot"):
        out(f"  from       snapshot {answer['pins']['snapshot']} (commit {_short(answer['pins'].get('commit'))})")
    repo = answer.get("repo")
    if repo:
        git = repo.get("git") or {}
        out(f"  repo       {repo['url']} -> {repo['path']}")
        if git.get("commit"):
            dirty = f"dirty ({git.get('changes')} changes)" if git.get("dirty") else "clean"
            ahead = f", {git['ab']} vs {git['upstream']}" if git.get("upstream") and git.get("ab") else ""
            out(f"             branch {git.get('branch') or '-'}  commit {_short(git['commit'])}  {dirty}{ahead}")
        if repo.get("status") and not repo.get("ok"):
            out(f"             {_mark(False)}: {repo.get('message')}")
            if repo.get("hint"):
                out(f"             fix: {repo['hint']}")
    data = answer.get("data")
    if data:
        out(f"  data       {data['remote']}" + (f" ({', '.join(data['paths'])})" if data.get("paths") else ""))
        state = data.get("status", "not pulled yet")
        line = f"             {state}" + (f" at {_when(data.get('at'))}" if data.get("at") else "")
        if data.get("hash"):
            line += f", data hash {_short(data['hash'])}"
        out(line)
        if data.get("ok") is False:
            out(f"             {data.get('message')}")
            if data.get("hint"):
                out(f"             fix: {data['hint']}")
    secrets = answer.get("secrets") or {}
    if answer.get("secrets_needed"):
        missing = secrets.get("missing") or []
        line = f"  secrets    {len(secrets.get('delivered') or [])} delivered"
        out(line + (f"; MISSING: {', '.join(missing)} (`devenv secret set NAME`, then restart)" if missing else ""))
    tracking = answer.get("tracking")
    if tracking and tracking.get("wandb"):
        wandb = tracking["wandb"]
        entity = f", entity {wandb['entity']}" if wandb.get("entity") else ""
        out(f"  tracking   wandb project {wandb['project']}{entity}")


data_app = Group("data", no_args_is_help=True, help="A workspace's DVC data.")


@data_app.command("pull")
@argument("name", help="workspace")
def data_pull(name: str) -> None:
    """Pull the spec's DVC data into workspace NAME again (cloning its repo first if it is missing)."""
    result: dict[str, Any] | None = None
    for frame in Client().data_pull(name):
        if "event" in frame:
            event = frame["event"]
            if event.get("id") is not None or event.get("kind") == "progress":
                click.echo(f"    {event['message']}", err=True)
        elif "error" in frame:
            raise error_from_payload(frame["error"])
        elif "setup" in frame:
            result = frame["setup"]
    if result is None:
        raise DevenvError("the daemon closed the stream before the pull ended", hint=f"`devenv status {name}`")
    data = result.get("data") or {}
    if not data.get("ok"):
        raise DevenvError(data.get("message") or "the data pull failed", hint=data.get("hint"))
    click.echo(f"{name}: data pulled (data hash {_short(data.get('hash'))})")


@command("snapshot")
@argument("name", help="workspace")
@click.option("--note", "-m", help="why this snapshot (shown by `devenv snapshots`)")
@click.option("--json", "as_json", is_flag=True, help="print the whole record")
def snapshot(name: str, note: str | None, as_json: bool) -> None:
    """Record exactly what workspace NAME runs: image, lock, commit (and a dirty diff's hash), data, W&B runs."""
    record = Client().snapshot(name, note=note)
    if as_json:
        _json(record)
        return
    click.echo(record["id"])
    repo = record.get("repo") or {}
    if repo.get("dirty"):
        click.echo(
            "warning: the clone has uncommitted changes; only their hash is recorded, and "
            "`up --from-snapshot` reproduces the commit",
            err=True,
        )
    click.echo(f"(recreate with `devenv up --from-snapshot {record['id']}`)", err=True)


@command("snapshots")
@argument("workspace", required=False, help="only this workspace's")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
def snapshots(workspace: str | None, as_json: bool) -> None:
    """Reproducibility records, newest first (the team's: they hold hashes and URLs, never secrets)."""
    items = Client().snapshots(workspace)
    if as_json:
        _json(items)
        return
    rows = [("ID", "WORKSPACE", "TAKEN", "IMAGE", "COMMIT", "DATA", "RUNS", "NOTE")]
    for item in items:
        repo, data = item.get("repo") or {}, item.get("data") or {}
        commit = _short(repo.get("commit"), 10) + ("+dirty" if repo.get("dirty") else "")
        rows.append(
            (
                item["id"],
                item["workspace"],
                _when(item.get("created_at")),
                _short(item.get("image_hash")),
                commit,
                _short(data.get("hash")),
                str(len(item.get("wandb_runs") or [])),
                item.get("note") or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
