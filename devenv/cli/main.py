"""Entry point of `devenv`: commands parse arguments, call the library, render results.

Errors are DevenvError subclasses rendered in one place (`main`); usage errors exit 2, like every
Unix tool; nothing prints a traceback unless DEVENV_DEBUG is set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from devenv.cli import ui
from devenv.cli.clicktools import PATH, Group, argument
from devenv.cli.context import SPEC_FILENAME, Context, spec_option
from devenv.errors import DevenvError, SpecInvalid, UsageError

_WORKSPACES = "devenv.cli.workspaces"
app = Group(
    "devenv",
    no_args_is_help=True,
    help="Pinned, reproducible ML workspaces on Docker engines and GPUs.",
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 120},
    lazy={  # imported only when used: `devenv ls` loads the workspace commands and the client, nothing else
        "images": "devenv.cli.images:app",
        "up": f"{_WORKSPACES}:up",
        "ls": f"{_WORKSPACES}:list_workspaces",
        "stop": f"{_WORKSPACES}:stop",
        "start": f"{_WORKSPACES}:start",
        "rm": f"{_WORKSPACES}:remove",
        "rebuild": f"{_WORKSPACES}:rebuild",
        "exec": f"{_WORKSPACES}:exec_command",
        "logs": f"{_WORKSPACES}:logs",
        "events": f"{_WORKSPACES}:events",
        "sync": f"{_WORKSPACES}:sync",
        "ssh": "devenv.cli.ssh:ssh",
        "ssh-config": "devenv.cli.ssh:ssh_config",
        "access": "devenv.cli.access:app",
        "jupyter": "devenv.cli.access:jupyter",
        "secret": "devenv.cli.secrets:app",
        "dotfiles": "devenv.cli.dotfiles:app",
        "daemon": "devenv.cli.daemon:app",
        "login": "devenv.cli.daemon:login",
        "logout": "devenv.cli.daemon:logout",
        "tui": "devenv.tui.command:command",
        "promote": "devenv.cli.promote:promote",
        "status": "devenv.cli.versioning:status",
        "data": "devenv.cli.versioning:data_app",
        "snapshot": "devenv.cli.versioning:snapshot",
        "snapshots": "devenv.cli.versioning:snapshots",
        "ci": "devenv.cli.ci:app",
        "host": "devenv.cli.hosts:app",
        "offers": "devenv.cli.offers:offers",
        "verify": "devenv.cli.verify:verify",
        "lock": "devenv.cli.projects:lock",
        "build": "devenv.cli.projects:build",
        "run": "devenv.cli.projects:run",
    },
)
click.version_option(package_name="devenv", message="%(prog)s %(version)s")(app)  # read only when asked


@app.command()
@click.option("--template", "-t", help="minimal, sklearn, pytorch, jax (default: read the project folder)")
@click.option("--from", "from_devcontainer", type=PATH, help="a devcontainer.json to import")
@click.option("--name", help="workspace name (default: the folder's name)")
@click.option("--dir", "directory", type=PATH, default=Path("."), help="project folder")
@click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME",
    help="also take this extra: [project.optional-dependencies] NAME, requirements-NAME.txt (repeatable)",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME",
    help="also take this dependency group of pyproject.toml (repeatable)",
)
@click.option(
    "--repo/--no-repo",
    "repo",
    default=None,
    help="clone the git remote (repo:) even with local edits / never; default: only a clean, pushed checkout",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="YYYY-MM-DD|today",
    help="resolve the requirements as PyPI stood that day (default: when git last changed the dependency "
    "files, if long ago); today: today's index",
)
@click.option("--force/--no-force", default=False, help="overwrite existing files")
def init(
    template: str | None,
    from_devcontainer: Path | None,
    name: str | None,
    directory: Path,
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    repo: bool | None,
    as_of: str | None,
    force: bool,
) -> None:
    """Write devenv.yaml from what the project holds (requirements, pyproject.toml, environment.yml, Dockerfile,
    devcontainer, git remote), or from a template (--template) or a Dev Container (--from)."""
    from devenv.spec.scaffold import available_templates, init_from_devcontainer, init_from_repo, init_from_template

    if template is not None and from_devcontainer is not None:
        raise UsageError(
            "give at most one of --template NAME or --from devcontainer.json",
            hint=f"templates: {', '.join(available_templates())}; or neither, to read the project",
        )
    if (template is not None or from_devcontainer is not None) and (
        extras or groups or repo is not None or as_of is not None
    ):
        raise UsageError(
            "--extra, --group, --repo and --as-of choose what is read from the project",
            hint="leave out --template/--from to read the project folder",
        )
    out = ui.out_console()
    if template is not None:
        written = init_from_template(template, directory, name=name, force=force)
    elif from_devcontainer is not None:
        written, warnings = init_from_devcontainer(from_devcontainer, directory, name=name, force=force)
        for warning in warnings:
            ui.err_console().print(f"[yellow]warning[/]: {warning}", markup=True, highlight=False)
    else:
        found, written = init_from_repo(
            directory, name=name, extras=extras, groups=groups, repo=repo, force=force, as_of=_as_of_option(as_of)
        )
        if not found.found:
            out.print(
                f"found nothing to read in {directory} (requirements, pyproject.toml, environment.yml, "
                "Dockerfile, devcontainer): wrote the minimal template",
                highlight=False,
            )
        for note in found.notes:
            out.print(note.render(), markup=False, highlight=False)
        if found.choices:
            out.print("available: " + ", ".join(sorted(found.choices)), markup=False, highlight=False)
    for path in written:
        out.print(f"wrote {path}", highlight=False)
    out.print("next: `devenv up` (locks, builds and starts the workspace)")


def _as_of_option(value: str | None) -> str | None:
    if value is None or value == "today":
        return value
    from devenv.spec.fields import SpecValueError, as_of_day

    try:
        return as_of_day(value)
    except SpecValueError as exc:
        raise UsageError(f"--as-of: {exc}", hint=exc.hint) from None


@app.command()
@argument("spec", type=PATH, default=Path(SPEC_FILENAME), help="the spec file")
@click.option("--json", "as_json", is_flag=True, help="print problems as JSON")
def validate(spec: Path, as_json: bool) -> None:
    """Check a devenv.yaml; print every problem with file:line:column, exit 2 if any."""
    try:
        from devenv.spec import load_spec

        loaded = load_spec(spec)
    except SpecInvalid as invalid:
        if as_json:
            ui.out_console().print_json(json.dumps([issue.__dict__ for issue in invalid.issues]))
            raise click.exceptions.Exit(invalid.exit_code) from None
        raise
    ui.out_console().print(f"{spec}: ok ({loaded.name})")


@app.command()
def schema() -> None:
    """Print the JSON Schema of devenv.yaml (for editors)."""
    from devenv.spec import spec_json_schema

    ui.out_console().print_json(json.dumps(spec_json_schema()))


@app.command()
@spec_option
def render(spec: Path) -> None:
    """Print the Dockerfile devenv renders from the spec and lock."""
    context = Context(spec)
    from devenv.build.project import checked_lock, project_plan

    project = context.project()
    ui.out_console().print(project_plan(project, checked_lock(project)).dockerfile, markup=False, end="")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit. Usage errors exit 2 (click shows them), ours are rendered here."""
    try:
        code = _invoke(argv if argv is not None else sys.argv[1:])
    except (Exception, KeyboardInterrupt) as error:
        fail(error)
    sys.exit(code)


def fail(error: BaseException) -> NoReturn:
    """Show an error the way every devenv command does, and exit with its code: never a traceback."""
    if isinstance(error, DevenvError):
        ui.show_error(error)
        sys.exit(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        ui.err_console().print("interrupted")
        sys.exit(130)
    if os.environ.get("DEVENV_DEBUG"):  # the last line of defence
        import traceback

        traceback.print_exception(error)
    ui.err_console().print(
        f"[bold red]internal error[/]: {error.__class__.__name__}: {error}\n"
        "  this is a bug in devenv; rerun with DEVENV_DEBUG=1 and report the traceback",
        markup=True,
        highlight=False,
    )
    sys.exit(70)


def _invoke(args: list[str]) -> int:
    """click's standalone mode, except that Ctrl-C stays a KeyboardInterrupt (exit 130, not click's 1)."""
    try:
        result = app.main(args=args, prog_name="devenv", standalone_mode=False)
    except click.Abort as abort:
        if isinstance(abort.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        click.echo("Aborted!", err=True)
        return 1
    except click.ClickException as error:
        error.show()
        return error.exit_code
    return result if isinstance(result, int) else 0
