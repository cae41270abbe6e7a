"""`devenv promote`: the production image of this project at a commit (see devenv/promote)."""

from __future__ import annotations

from pathlib import Path

import click

from devenv.cli import ui
from devenv.cli.clicktools import PATH, command
from devenv.cli.context import Context, engine_option, spec_option


@command("promote")
@spec_option
@engine_option
@click.option(
    "--to",
    "to",
    metavar="REGISTRY/NAME:TAG",
    help="tag it so and push it there (credentials from `docker login`), then pull it back by digest",
)
@click.option("--ref", default="HEAD", show_default=True, help="the commit to package")
@click.option("--allow-dirty", is_flag=True, help="package uncommitted changes too (default: the commit only)")
@click.option(
    "--sbom",
    "sbom_path",
    type=PATH,
    help="where to write the SBOM beside the image (default: NAME-COMMIT.cdx.json beside devenv.yaml)",
)
def promote(
    spec: Path, engine: str | None, to: str | None, ref: str, allow_dirty: bool, sbom_path: Path | None
) -> None:
    """Package the project for production: same base and lock, no dev tooling, code at a commit, tests as a gate."""
    context = Context(spec, engine)
    from devenv.promote.package import promote as run_promote

    project = context.project()
    with ui.ProgressDisplay() as progress:
        made = run_promote(
            context.client(),
            project,
            tag=to,
            ref=ref,
            allow_dirty=allow_dirty,
            push_to_registry=to is not None,
            progress=progress,
        )
    target = sbom_path or project.directory / f"{project.spec.name}-{made.commit[:12]}.cdx.json"
    target.write_bytes(made.sbom)
    err = ui.err_console()
    for note in made.notes:
        err.print(f"[yellow]note[/]: {note}", markup=True, highlight=False)
    err.print(f"gate: {made.gate}; SBOM: {target}; commit {made.commit[:12]} ({made.created})", highlight=False)
    if made.pushed is not None:
        sent = made.pushed
        err.print(
            f"pushed {sent.layers_sent} layers ({sent.bytes_sent / 1e6:.1f} MB), {sent.layers_present} "
            f"already there; pulled back by digest: same image",
            highlight=False,
        )
        ui.out_console().print(sent.reference, highlight=False)
        return
    ui.out_console().print(f"{made.tag} {made.image_id}", highlight=False)
