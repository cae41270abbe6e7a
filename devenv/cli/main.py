"""Entry point of `devenv`: commands parse arguments, call the library, render results.

Errors are DevenvError subclasses rendered in one place (`main`); usage errors exit 2, like every
Unix tool; nothing prints a traceback unless DEVENV_DEBUG is set.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from devenv.cli import daemon as daemon_commands
from devenv.cli import images as images_commands
from devenv.cli import workspaces as workspace_commands
from devenv.cli.context import Context, engine_option, spec_option
from devenv.cli.display import ProgressDisplay, err_console, out_console, show_error
from devenv.errors import DevenvError, SpecInvalid, UsageError
from devenv.spec import SPEC_FILENAME, load_spec, spec_json_schema
from devenv.spec.scaffold import available_templates, init_from_devcontainer, init_from_template

app = typer.Typer(
    name="devenv", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Pinned, reproducible ML workspaces on Docker engines and GPUs.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(images_commands.app, name="images")
app.add_typer(workspace_commands.app)
app.add_typer(daemon_commands.app, name="daemon")
app.add_typer(daemon_commands.login_app)


@app.command()
def init(
    template: Annotated[str | None, typer.Option("--template", "-t", help="minimal, sklearn, pytorch, jax")] = None,
    from_devcontainer: Annotated[Path | None, typer.Option("--from", help="a devcontainer.json to import")] = None,
    name: Annotated[str | None, typer.Option(help="workspace name (default: the folder's name)")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="project folder")] = Path("."),
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Write devenv.yaml and requirements.in from a template or a Dev Container."""
    if (template is None) == (from_devcontainer is None):
        raise UsageError("give exactly one of --template NAME or --from devcontainer.json",
                         hint=f"templates: {', '.join(available_templates())}")
    if template is not None:
        written = init_from_template(template, directory, name=name, force=force)
    else:
        assert from_devcontainer is not None
        written, warnings = init_from_devcontainer(from_devcontainer, directory, name=name, force=force)
        for warning in warnings:
            err_console.print(f"[yellow]warning[/]: {warning}", markup=True, highlight=False)
    for path in written:
        out_console.print(f"wrote {path}")
    out_console.print("next: `devenv lock`, then `devenv build`")


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="the spec file")] = Path(SPEC_FILENAME),
    as_json: Annotated[bool, typer.Option("--json", help="print problems as JSON")] = False,
) -> None:
    """Check a devenv.yaml; print every problem with file:line:column, exit 2 if any."""
    try:
        loaded = load_spec(spec)
    except SpecInvalid as invalid:
        if as_json:
            out_console.print_json(json.dumps([issue.__dict__ for issue in invalid.issues]))
            raise typer.Exit(invalid.exit_code) from None
        raise
    out_console.print(f"{spec}: ok ({loaded.name})")


@app.command()
def schema() -> None:
    """Print the JSON Schema of devenv.yaml (for editors)."""
    out_console.print_json(json.dumps(spec_json_schema()))


@app.command()
def lock(
    spec: spec_option = Path(SPEC_FILENAME),
    engine: engine_option = None,
    check: Annotated[bool, typer.Option("--check", help="only check that the lock matches the spec")] = False,
    upgrade: Annotated[bool, typer.Option(help="re-resolve against the newest index")] = False,
) -> None:
    """Resolve every pin into devenv.lock (or --check that it is current)."""
    context = Context(spec, engine)
    if check:
        project = context.project()
        from devenv.build.project import checked_lock

        current = checked_lock(project)
        out_console.print(f"{project.lock_path}: up to date ({current.content_hash()[:12]})")
        return
    with ProgressDisplay() as progress:
        from devenv.build.project import lock_project

        written, changed = lock_project(context.client(), context.project(), progress, upgrade=upgrade)
    state = "written" if changed else "unchanged"
    out_console.print(f"{context.project().lock_path}: {state} ({len(written.python)} Python packages, "
                      f"{len(written.apt)} apt packages, {len(written.tooling)} tooling packages)")


@app.command()
def build(
    spec: spec_option = Path(SPEC_FILENAME),
    engine: engine_option = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="rebuild every layer")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show build output")] = False,
) -> None:
    """Build the workspace image from devenv.lock (a tag lookup when nothing changed)."""
    context = Context(spec, engine)
    from devenv.build.project import build_project

    with ProgressDisplay(verbose=verbose) as progress:
        result = build_project(context.client(), context.project(), progress, no_cache=no_cache)
    out_console.print(result.tag)


@app.command()
def render(spec: spec_option = Path(SPEC_FILENAME)) -> None:
    """Print the Dockerfile devenv renders from the spec and lock."""
    context = Context(spec, None)
    from devenv.build.project import checked_lock, project_plan

    project = context.project()
    out_console.print(project_plan(project, checked_lock(project)).dockerfile, markup=False, end="")


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[list[str], typer.Argument(help="the command and its arguments")],
    spec: spec_option = Path(SPEC_FILENAME),
    engine: engine_option = None,
    no_network: Annotated[bool, typer.Option("--no-network", help="run without networking")] = False,
) -> None:
    """Build if needed, then run one command in the workspace image as `dev`; exits with its code."""
    context = Context(spec, engine)
    from devenv.build.project import build_project
    from devenv.build.runner import run_once

    client = context.client()
    with ProgressDisplay() as progress:
        result = build_project(client, context.project(), progress)
    code = run_once(client, result.tag, command, network=not no_network)
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. click handles usage errors (exit 2), --help and exit codes; we render ours."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv if argv is not None else sys.argv[1:], prog_name="devenv", standalone_mode=True)
    except DevenvError as error:
        show_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as unexpected:  # the last line of defence: no traceback for users
        if os.environ.get("DEVENV_DEBUG"):
            traceback.print_exc()
        err_console.print(f"[bold red]internal error[/]: {unexpected.__class__.__name__}: {unexpected}\n"
                          "  this is a bug in devenv; rerun with DEVENV_DEBUG=1 and report the traceback",
                          markup=True, highlight=False)
        sys.exit(70)
