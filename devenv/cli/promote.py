"""`devenv promote`: the production image of this project at a commit, made by the daemon (see devenv/promote).

Git is read here, on the person's machine (the daemon has no checkout): the commit's facts and its git
archive go to the daemon with the project's files, and the person's registry login for `--to`."""

from __future__ import annotations

import base64
import dataclasses
import tempfile
from pathlib import Path

import click

from devenv.cli import ui
from devenv.cli.clicktools import PATH, command
from devenv.cli.context import spec_option
from devenv.cli.projects import finished, on_option
from devenv.client import Client
from devenv.progress import emit


@command("promote")
@spec_option
@on_option
@click.option(
    "--to",
    "to",
    metavar="REGISTRY/NAME:TAG",
    help="tag it so and push it there (your `docker login`), then pull it back by digest",
)
@click.option("--ref", default="HEAD", show_default=True, help="the commit to package")
@click.option("--allow-dirty", is_flag=True, help="package uncommitted changes too (default: the commit only)")
@click.option(
    "--sbom",
    "sbom_path",
    type=PATH,
    help="where to write the SBOM beside the image (default: NAME-COMMIT.cdx.json beside devenv.yaml)",
)
def promote(spec: Path, on: str | None, to: str | None, ref: str, allow_dirty: bool, sbom_path: Path | None) -> None:
    """Package the project for production: same base and lock, no dev tooling, code at a commit, tests as a gate."""
    from devenv.code.client import put_code
    from devenv.promote.credentials import registry_login
    from devenv.spec import load_spec
    from devenv.upload import collect_project
    from devenv.versioning.commit import read_commit, write_archive

    loaded = load_spec(spec)
    if loaded.promote is None:  # said before git is read or anything is uploaded
        from devenv.errors import UsageError

        raise UsageError(
            f"{spec}: no `promote:` section", hint='add `promote: {entrypoint: "python -m app"}` to devenv.yaml'
        )
    facts, root = read_commit(spec.parent, ref, allow_dirty=allow_dirty)
    auth = registry_login(to) if to is not None else None
    client = Client()
    with ui.ProgressDisplay() as progress:
        with tempfile.TemporaryFile(prefix="devenv-promote-") as archive:
            write_archive(root, facts.commit, archive)
            archive.seek(0)
            emit(progress, "phase", f"uploading commit {facts.commit[:12]}")
            code = put_code(client, archive)["hash"]
        frames = client.promote_project(
            collect_project(spec),
            code,
            dataclasses.asdict(facts),
            tag=to,
            push=to is not None,
            auth=auth,
            on=on,
        )
        made = finished(frames, progress)["promoted"]
    target = sbom_path or spec.parent / f"{loaded.name}-{made['commit'][:12]}.cdx.json"
    target.write_bytes(base64.b64decode(made["sbom"]))
    err = ui.err_console()
    for note in made["notes"]:
        err.print(f"[yellow]note[/]: {note}", markup=True, highlight=False)
    err.print(
        f"gate: {made['gate']}; SBOM: {target}; commit {made['commit'][:12]} ({made['created']})", highlight=False
    )
    sent = made["pushed"]
    if sent is not None:
        err.print(
            f"pushed {sent['layers_sent']} layers ({sent['bytes_sent'] / 1e6:.1f} MB), {sent['layers_present']} "
            f"already there; pulled back by digest: same image",
            highlight=False,
        )
        ui.out_console().print(sent["reference"], highlight=False)
        return
    ui.out_console().print(f"{made['tag']} {made['image_id']}", highlight=False)
