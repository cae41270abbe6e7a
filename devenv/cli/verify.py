"""`devenv verify`: the daemon rebuilds the image from the lock with no cache and proves it is the image in use
(see devenv/build/verify.py)."""

from __future__ import annotations

from pathlib import Path

from devenv.cli import ui
from devenv.cli.clicktools import PATH, argument, command
from devenv.cli.context import SPEC_FILENAME
from devenv.cli.projects import finished, on_option
from devenv.client import Client
from devenv.errors import UsageError
from devenv.upload import collect_project


@command("verify")
@argument("project_dir", type=PATH, default=Path("."), required=False, help="the project folder (devenv.yaml)")
@on_option
def verify(project_dir: Path, on: str | None) -> None:
    """Rebuild the image from devenv.lock with no cache and compare it with the image in use: exit 0 with its ID
    when they are the same, 1 naming the first layer and the files that differ."""
    spec = project_dir / SPEC_FILENAME
    if not spec.is_file():
        raise UsageError(f"no {SPEC_FILENAME} in {project_dir}", hint="run it in a project folder (`devenv init`)")
    with ui.ProgressDisplay() as progress:
        verified = finished(Client().verify_project(collect_project(spec), on=on), progress)["verified"]
    ui.err_console().print(
        f"verified: {verified['tag']} is what the lock builds (rebuilt in {verified['build_seconds']:.1f}s)",
        highlight=False,
    )
    ui.out_console().print(verified["image_id"], highlight=False)
