"""Workspace commands: up, sync, ls, stop, start, rm, exec, logs, rebuild, events. Thin: the daemon does the work.

Commands that change a workspace read the daemon's stream of events and end on its last line:
the workspace as it now is, or the error (raised as its own DevenvError class).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from devenv.cli.clicktools import PATH, WORDS_SETTINGS, argument, command, command_words
from devenv.client import Client
from devenv.errors import DevenvError, error_from_payload
from devenv.upload import LOCK_FILENAME, SPEC_FILENAME, collect_project

if TYPE_CHECKING:
    from devenv import wire

# the commands are registered on the main group, lazily, by devenv.cli.main


def follow(frames: Iterator[wire.ChangeFrame]) -> wire.WorkspaceView | None:
    """Show a change's events until its final line; return the workspace (None when deleted).

    On a terminal: rich, with a live status line; elsewhere plain lines (and no rich import).
    """
    status = None
    if sys.stderr.isatty():
        from devenv.cli.display import err_console

        status = err_console.status("working…")
        status.start()
    try:
        for frame in frames:
            if "event" in frame:
                _show_event(frame["event"], status)
            elif "error" in frame:
                raise error_from_payload(frame["error"])
            elif "workspace" in frame:
                return frame["workspace"]
            elif "deleted" in frame:
                return None
    finally:
        if status is not None:
            status.stop()
    raise DevenvError(
        "the daemon closed the stream before the work ended",
        hint="`devenv ls` shows where it is; `devenv daemon logs` tells why",
    )


def _show_event(event: wire.EventView, status: Any) -> None:
    kind, message = event.get("kind"), event.get("message", "")
    if status is None:  # not a terminal: stored events as plain lines, live output dropped
        if kind == "state":
            print(f"==> {message}", file=sys.stderr)
        elif kind in ("progress", "autostop", "reconcile", "setup") and event.get("id") is not None:
            print(f"    {message}", file=sys.stderr)
        return
    from devenv.cli.display import err_console

    if kind == "state":
        err_console.print(f"[bold blue]==>[/] {message}", markup=True, highlight=False)
    elif kind == "progress" and event.get("id") is not None:
        err_console.print(f"    {message}", markup=False, highlight=False)
    elif kind == "progress":
        status.update(message[: max(10, err_console.width - 4)])
    elif kind in ("autostop", "reconcile", "setup"):
        from rich.markup import escape

        err_console.print(f"[yellow]{kind}[/]: {escape(message)}", markup=True, highlight=False)


def _ready_line(ws: wire.WorkspaceView) -> str:
    ssh = f", ssh on engine port {ws['ssh_port']}" if ws.get("ssh_port") else ""
    where = f" on {ws['backend']}" if ws.get("backend") not in (None, "local") else ""
    return f"{ws['name']}: {ws['state']}{where}{ssh}"


def _check_settled(ws: wire.WorkspaceView | None, wanted: str) -> None:
    if ws is not None and ws["state"] != wanted:
        reason = f": {ws['reason']}" if ws.get("reason") else ""
        raise DevenvError(f"workspace {ws['name']} is {ws['state']}{reason}")


@command()
@click.option("--file", "-f", "spec", type=PATH, default=Path(SPEC_FILENAME), help="the spec file")
@click.option("--name", help="workspace name (default: the spec's name)")
@click.option(
    "--from-snapshot",
    "snapshot_id",
    metavar="ID",
    help="recreate a snapshot: same image, same commit, same data (no project folder needed)",
)
@click.option(
    "--on",
    "on",
    metavar="HOST|BACKEND|auto",
    help="the host or backend to run on (`devenv host ls`, or one daemon.yaml names, such as a slurm "
    "cluster), or auto: a host with the GPUs free (default: the spec's `backend:`)",
)
def up(spec: Path, name: str | None, snapshot_id: str | None, on: str | None) -> None:
    """Build (if needed) and start the workspace of the spec here, with the folder's code; twice gives one."""
    client = Client()
    if snapshot_id:
        made = follow(client.up_from_snapshot(snapshot_id, name=name))
        assert made is not None
        _check_settled(made, "running")
        print(_ready_line(made))
        return
    project = collect_project(spec)
    repo = _spec_repo(project["files"].get(spec.name, ""))
    code = None
    if repo is None:  # no `repo:`: the project folder itself goes in (placed on the first start)
        code, said = _upload(client, spec.parent)
        print(f"code: {said}", file=sys.stderr)
    ws = follow(client.up({**project, **({"code": code} if code else {})}, name=name, on=on))
    assert ws is not None
    if LOCK_FILENAME not in project["files"]:
        lock = client.lock_text(ws["name"])
        if lock:
            (spec.parent / LOCK_FILENAME).write_text(lock)
            print(f"wrote {spec.parent / LOCK_FILENAME} (commit it: teammates get the same image)", file=sys.stderr)
    _check_settled(ws, "running")
    placed = (ws.get("setup") or {}).get("code") or {}
    if repo is not None:
        print(f"code: cloned from {repo}", file=sys.stderr)
    elif code is not None and placed.get("hash") not in (None, code["hash"]):
        print(
            f"code: {placed.get('folder')} was placed at the first start and is left as it is; "
            f"`devenv sync {ws['name']}` pushes these edits",
            file=sys.stderr,
        )
    print(_ready_line(ws))


def _spec_repo(text: str) -> str | None:
    """`URL@ref` of the spec's `repo:`, None when it has none (then the folder is uploaded)."""
    from devenv.yamlsafe import load_limited

    try:
        loaded = load_limited(text)
    except Exception:
        return None
    repo = loaded.get("repo") if isinstance(loaded, dict) else None
    if isinstance(repo, str):
        return repo
    if isinstance(repo, dict) and repo.get("url"):
        return f"{repo['url']}@{repo.get('ref') or 'default branch'}"
    return None


def _upload(client: Client, folder: Path) -> tuple[dict[str, Any], str]:
    """The project folder, uploaded with live progress; (code reference, what went)."""
    from devenv.cli import ui
    from devenv.code.client import upload_folder
    from devenv.progress import emit

    with ui.ProgressDisplay() as progress:
        return upload_folder(client, folder, lambda line: emit(progress, "log", line))


@command()
@argument("name", help="workspace")
@click.option("--file", "-f", "spec", type=PATH, default=Path(SPEC_FILENAME), help="the spec of the project folder")
@click.option("--force", is_flag=True, help="overwrite files changed inside the workspace too")
@click.option("--dry-run", is_flag=True, help="list what would change; change nothing")
def sync(name: str, spec: Path, force: bool, dry_run: bool) -> None:
    """Push the project folder's edits into the workspace; files changed there too are refused unless --force."""
    if not spec.is_file():
        raise DevenvError(f"no spec at {spec}", hint="run `devenv sync` in the project folder, or pass -f PATH")
    client = Client()
    code, said = _upload(client, spec.parent)
    print(f"code: {said}", file=sys.stderr)
    answer = client.sync(name, code, force=force, dry_run=dry_run)
    for path in answer["write"]:
        print(f"  {'would write' if dry_run else 'wrote'}: {path}")
    for path in answer["delete"]:
        print(f"  {'would delete' if dry_run else 'deleted'}: {path}")
    for path, why in answer["conflicts"]:
        print(f"  conflict: {path} ({why})")
    verb = "would change" if dry_run else "changed"
    print(f"{name}: {len(answer['write']) + len(answer['delete'])} file(s) {verb} in {answer['folder']}")
    if answer["conflicts"]:
        raise click.exceptions.Exit(1)


def _countdown(ws: wire.WorkspaceView) -> str:
    seconds = ws.get("autostop_in")
    if seconds is None:
        return "-" if not ws.get("autostop_seconds") else "paused"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _age(created: float | None) -> str:
    if not created:
        return "-"
    seconds = int(time.time() - created)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@command("ls")
@click.option("--all", "-a", "all_pages", is_flag=True, help="every workspace, not only the first 100")
@click.option("--owner", help="only this owner's")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_workspaces(all_pages: bool, owner: str | None, as_json: bool) -> None:
    """List workspaces: state, image, SSH port and the autostop countdown."""
    client = Client()
    page = client.workspaces(owner=owner)
    items, total = list(page["items"]), page["total"]
    while all_pages and page.get("next"):
        page = client.workspaces(owner=owner, after=page["next"])
        items.extend(page["items"])
    if as_json:
        import json

        print(json.dumps(items, indent=2))
        return
    hosts = any(ws.get("backend") not in (None, "local") for ws in items)  # columns only where they say something
    prices = any(ws.get("price_per_hour") is not None for ws in items)
    rows: list[tuple[str, ...]] = [
        (
            "NAME",
            "STATE",
            *(["HOST"] if hosts else []),
            "OWNER",
            "IMAGE",
            "SSH",
            *(["PRICE"] if prices else []),
            "AUTOSTOP",
            "AGE",
        )
    ]
    for ws in items:
        state = ws["state"] + (f" ({ws['reason']})" if ws["state"] in ("failed", "lost") and ws.get("reason") else "")
        price = f"${ws['price_per_hour']:.3f}/h" if ws.get("price_per_hour") is not None else "-"
        rows.append(
            (
                ws["name"],
                state,
                *([ws.get("backend") or "-"] if hosts else []),
                ws["owner"],
                ws.get("image") or "-",
                str(ws.get("ssh_port") or "-"),
                *([price] if prices else []),
                _countdown(ws),
                _age(ws.get("created_at")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    ]
    if len(items) < total:
        out.append(f"({len(items)} of {total}; `devenv ls --all` for every one)")
    sys.stdout.write("\n".join(out) + "\n")


@command()
@argument("name", help="workspace")
def stop(name: str) -> None:
    """Stop a workspace (its home volume and image stay)."""
    ws = follow(Client().stop(name))
    _check_settled(ws, "stopped")
    print(f"{name}: stopped")


@command()
@argument("name", help="workspace")
def start(name: str) -> None:
    """Start a stopped (or lost) workspace with its home as it was."""
    ws = follow(Client().start(name))
    assert ws is not None
    _check_settled(ws, "running")
    print(_ready_line(ws))


@command("rm")
@argument("name", help="workspace")
@click.option("--keep-volume", is_flag=True, help="keep the home volume for a later `up`")
def remove(name: str, keep_volume: bool) -> None:
    """Delete a workspace: its container, and its home volume unless --keep-volume."""
    follow(Client().remove(name, keep_volume=keep_volume))
    print(f"{name}: removed" + (" (home volume kept)" if keep_volume else ""))


@command()
@argument("name", help="workspace")
@click.option(
    "--file",
    "-f",
    "spec",
    type=PATH,
    default=Path(SPEC_FILENAME),
    help="the spec to rebuild from (default: ./devenv.yaml when present, else the stored one)",
)
def rebuild(name: str, spec: Path) -> None:
    """Build the image again from the spec and replace the container; the home volume and its files stay."""
    project = collect_project(spec) if spec.is_file() else None
    ws = follow(Client().rebuild(name, project))
    assert ws is not None
    _check_settled(ws, "running")
    print(_ready_line(ws))


@command("exec", context_settings=WORDS_SETTINGS)
@argument("name", help="workspace")
@argument("command", nargs=-1, required=True, type=click.UNPROCESSED, help="the command and its arguments (after --)")
@click.option("--root", is_flag=True, help="run as root instead of dev")
def exec_command(name: str, command: tuple[str, ...], root: bool) -> None:
    """Run a command in a running workspace; streams its output and exits with its exit code."""
    words = command_words(command)
    code = 1
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in Client().exec(name, words, user="root" if root else "dev"):
        if stream == "exit":
            code = int(data)
        elif isinstance(data, bytes):
            target = out if stream == "stdout" else err
            target.write(data)
            target.flush()
    raise click.exceptions.Exit(code)


@command()
@argument("name", help="workspace")
@click.option("--follow", "-f", "follow_output", is_flag=True, help="keep printing new output")
@click.option("--tail", type=int, help="only the last N lines")
def logs(name: str, follow_output: bool, tail: int | None) -> None:
    """The workspace's own output: sshd, JupyterLab and the entrypoint."""
    for chunk in Client().logs(name, follow=follow_output, tail=tail):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


@command()
@argument("name", required=False, default=None, help="only this workspace's")
@click.option("--follow", "-f", "follow_events", is_flag=True, help="keep printing new events")
@click.option("--limit", default=50, help="how many past events")
def events(name: str | None, follow_events: bool, limit: int) -> None:
    """The event and audit log: every state change and every request, with who made it."""
    client = Client()
    for event in client.events(name, limit=limit):
        _print_event(event)
    if follow_events:
        for event in client.follow_events(name):
            _print_event(event)


def _print_event(event: wire.EventView) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["at"]))
    where = event.get("workspace") or "-"
    print(f"{stamp}  {where:<20} {event['kind']:<9} {event['actor']:<16} {event['message']}", flush=True)
