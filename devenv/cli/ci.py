"""`devenv ci`: the project's tests in its locked image, on a laptop, in a pre-push hook and on CI alike."""

from __future__ import annotations

from pathlib import Path

import click

from devenv.cli import ui
from devenv.cli.clicktools import PATH, Group
from devenv.cli.context import Context, engine_option, spec_option

app = Group(
    "ci",
    no_args_is_help=True,
    help="Run the spec's `ci.test` in the workspace image, and write the CI files that do the same.",
)


@app.command()
@spec_option
@click.option("--force/--no-force", default=False, help="overwrite existing CI files")
def init(spec: Path, force: bool) -> None:
    """Write .github/workflows/devenv.yml and .pre-commit-config.yaml, both running `devenv ci run`."""
    from devenv.ci.workflow import project_root, write_ci_files
    from devenv.spec import load_spec  # file work only: no need to load the Docker SDK

    loaded = load_spec(spec)
    root = project_root(spec.resolve().parent)
    spec_path = spec.resolve().relative_to(root).as_posix()
    for path in write_ci_files(root, loaded, spec_path, force=force):
        ui.out_console().print(f"wrote {path}")
    ui.out_console().print("next: commit them; for the pre-push hook, `pre-commit install --hook-type pre-push`")


@app.command()
@spec_option
@engine_option
@click.option("--junit", type=PATH, help="also write a JUnit XML report to this file")
def run(spec: Path, engine: str | None, junit: Path | None) -> None:
    """Build if needed, then run `ci.test` in a fresh container with the project mounted; exits with its code."""
    context = Context(spec, engine)
    from devenv.ci.run import ci_image, run_tests

    project, client = context.project(), context.client()
    with ui.ProgressDisplay() as progress:  # closed before the tests run: their output is theirs alone
        image = ci_image(client, project, progress, junit=junit)
    code = run_tests(client, project, image, junit=junit)
    if junit is not None:
        ui.err_console().print(f"wrote {junit}")
    if code:
        assert project.spec.ci is not None  # ci_image refused a spec without it
        ui.err_console().print(
            f"✗ `{project.spec.ci.test}` exited with code {code}", markup=False, highlight=False, style="bold red"
        )
    raise click.exceptions.Exit(code)
