"""`devenv lock`, `build` and `run`: the project's files go to the daemon, which resolves, builds or runs on a
backend's engine (the spec's `backend:` by default, as `up` does) and streams its progress (and a command's
output) back; the lock comes back to be written beside the spec. `lock --check` reads only files, here."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import click

from devenv.cli import ui
from devenv.cli.clicktools import WORDS_SETTINGS, argument, command_words
from devenv.cli.context import Context, spec_option
from devenv.client import Client
from devenv.errors import DevenvError, error_from_payload
from devenv.progress import EventKind, Progress, ProgressEvent
from devenv.upload import LOCK_FILENAME, collect_project

if TYPE_CHECKING:
    from devenv import wire

# the commands are registered on the main group, lazily, by devenv.cli.main
on_option = click.option(
    "--on",
    "on",
    metavar="BACKEND",
    help="the backend whose engine does the work (`devenv daemon status` lists them; default: the spec's "
    "`backend:`, or local)",
)


def finished(frames: Iterator[wire.WorkFrame], progress: Progress) -> wire.WorkFrame:
    """Show the work's progress as it comes; its last line (locked, built), or its error raised."""
    for frame in frames:
        if not shown(frame, progress):
            return frame
    raise DevenvError(
        "the daemon closed the stream before the work ended", hint="`devenv daemon logs` tells why; try again"
    )


def shown(frame: wire.WorkFrame, progress: Progress) -> bool:
    """A progress line shown (True), an error raised; any other line is for the caller (False)."""
    if "error" in frame:
        raise error_from_payload(frame["error"])
    if "progress" not in frame:
        return False
    shown = frame["progress"]
    kind = shown["kind"] if shown["kind"] in get_args(EventKind) else "log"
    progress(ProgressEvent(kind, shown["message"], shown["current"], shown["total"]))  # type: ignore[arg-type]
    return True


def lock_through_daemon(
    spec: Path, progress: Progress, *, on: str | None = None, upgrade: bool = False
) -> wire.LockedView:
    """devenv.lock resolved by the daemon and written beside the spec (replaced whole, never half written)."""
    locked = finished(Client().lock_project(collect_project(spec), on=on, upgrade=upgrade), progress)["locked"]
    path = spec.parent / LOCK_FILENAME
    if not path.is_file() or path.read_text(encoding="utf-8") != locked["lock"]:
        partial = path.with_name(f".{LOCK_FILENAME}.{os.getpid()}.partial")
        partial.write_text(locked["lock"], encoding="utf-8")
        partial.replace(path)
    return locked


def lock_summary(spec: Path, locked: wire.LockedView) -> str:
    return (
        f"{spec.parent / LOCK_FILENAME}: {'written' if locked['changed'] else 'unchanged'} ({locked['python']} "
        f"Python packages, {locked['apt']} apt packages, {locked['tooling']} tooling packages)"
    )


def build_through_daemon(
    spec: Path, progress: Progress, *, on: str | None = None, no_cache: bool = False
) -> wire.BuiltView:
    return finished(Client().build_project(collect_project(spec), on=on, no_cache=no_cache), progress)["built"]


@click.command()
@spec_option
@on_option
@click.option("--check", is_flag=True, help="only check that the lock matches the spec")
@click.option("--upgrade/--no-upgrade", default=False, help="re-resolve against the newest index")
def lock(spec: Path, on: str | None, check: bool, upgrade: bool) -> None:
    """Resolve every pin into devenv.lock (or --check that it is current)."""
    if check:
        from devenv.build.project import checked_lock

        project = Context(spec).project()
        current = checked_lock(project)
        ui.out_console().print(f"{project.lock_path}: up to date ({current.content_hash()[:12]})")
        return
    with ui.ProgressDisplay() as progress:
        locked = lock_through_daemon(spec, progress, on=on, upgrade=upgrade)
    ui.out_console().print(lock_summary(spec, locked))


@click.command()
@spec_option
@on_option
@click.option("--no-cache", is_flag=True, help="rebuild every layer")
@click.option("--verbose", "-v", is_flag=True, help="show build output")
def build(spec: Path, on: str | None, no_cache: bool, verbose: bool) -> None:
    """Build the workspace image from devenv.lock (a tag lookup when nothing changed)."""
    with ui.ProgressDisplay(verbose=verbose) as progress:
        built = build_through_daemon(spec, progress, on=on, no_cache=no_cache)
    ui.out_console().print(built["tag"])


@click.command(context_settings=WORDS_SETTINGS)
@argument("command", nargs=-1, required=True, type=click.UNPROCESSED, help="the command and its arguments")
@spec_option
@on_option
@click.option("--no-network", is_flag=True, help="run without networking")
def run(command: tuple[str, ...], spec: Path, on: str | None, no_network: bool) -> None:
    """Lock and build if needed, then run one command in the workspace image as `dev`; exits with its code."""
    words = command_words(command)
    with ui.ProgressDisplay() as progress:
        if not (spec.parent / LOCK_FILENAME).exists():  # as `devenv up` does: resolve the pins first, and keep them
            ui.err_console().print(f"no {LOCK_FILENAME} yet: resolving the pins into it first")
            ui.err_console().print(lock_summary(spec, lock_through_daemon(spec, progress, on=on)))
        frames = Client().run_project(collect_project(spec), words, on=on, network=not no_network)
        code = _output(frames, progress)
    raise click.exceptions.Exit(code)


def _output(frames: Iterator[wire.WorkFrame], progress: Any) -> int:
    """The build's progress, then the command's output written as it comes (the status line stopped
    first); its exit code."""
    streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for frame in frames:
        if "exit" in frame:
            return frame["exit"]
        if shown(frame, progress):
            continue
        progress.stop()
        for name, text in (("stdout", frame.get("stdout")), ("stderr", frame.get("stderr"))):
            if text is not None:
                streams[name].write(base64.b64decode(text))
                streams[name].flush()
    raise DevenvError("the daemon closed the stream before the command ended", hint="`devenv daemon logs` tells why")
