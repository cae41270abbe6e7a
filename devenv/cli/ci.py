"""`devenv ci`: the project's tests in its locked image, on a laptop, in a pre-push hook and on CI alike."""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import click

from devenv.cli import ui
from devenv.cli.clicktools import PATH, Group
from devenv.cli.context import spec_option
from devenv.cli.projects import on_option, shown
from devenv.client import Client
from devenv.errors import DevenvError
from devenv.progress import emit

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
@on_option
@click.option("--junit", type=PATH, help="also write a JUnit XML report to this file")
def run(spec: Path, on: str | None, junit: Path | None) -> None:
    """Build if needed, then run `ci.test` in a fresh container of the locked image, in a copy of the project
    folder; files the tests write there come back; exits with the tests' code."""
    from devenv.ci.run import Output, error_report
    from devenv.ci.workflow import require_test
    from devenv.code.client import upload_folder
    from devenv.spec import load_spec
    from devenv.upload import collect_project

    loaded = load_spec(spec)  # refused here, before anything is uploaded or built, without `ci.test`
    command = require_test(loaded, spec)
    client, output = Client(), Output(sys.stdout.buffer, sys.stderr.buffer)
    started, ran = time.perf_counter(), False
    try:
        with ui.ProgressDisplay() as progress:
            code_ref, said = upload_folder(client, spec.parent, lambda line: emit(progress, "log", line))
            emit(progress, "log", f"code: {said}")
            for frame in client.ci_project(collect_project(spec), code_ref["hash"], on=on):
                if "exit" in frame:
                    code = frame["exit"]
                    break
                if ran and "progress" in frame:  # after the tests' output: what came back, said plainly
                    ui.err_console().print(frame["progress"]["message"], markup=False, highlight=False)
                    continue
                if shown(frame, progress):
                    continue
                if not ran:
                    progress.stop()  # the tests' output is theirs alone
                    ran = True
                for which in ("stdout", "stderr", "changed"):
                    if which in frame:
                        output.write(which, base64.b64decode(frame[which]))
            else:
                raise DevenvError("the daemon closed the stream before the tests ended", hint="`devenv daemon logs`")
        written = output.give_back(spec.parent)
    except DevenvError as error:
        if junit is not None and not ran:
            error_report(junit, suite=loaded.name, command=command, seconds=time.perf_counter() - started, error=error)
        raise
    finally:
        output.close()
    err = ui.err_console()
    if written:
        shown_paths = ", ".join(written[:5]) + (f" and {len(written) - 5} more" if len(written) > 5 else "")
        err.print(f"the tests wrote {len(written)} file(s) into {spec.parent}: {shown_paths}", highlight=False)
    if junit is not None:
        output.report(junit, suite=loaded.name, command=command, code=code)
        err.print(f"wrote {junit}")
    if code:
        err.print(f"✗ `{command}` exited with code {code}", markup=False, highlight=False, style="bold red")
    raise click.exceptions.Exit(code)
