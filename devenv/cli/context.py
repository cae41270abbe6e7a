"""What every command shares: the spec path, and the project opened lazily (its files only: the engines are
the daemon's)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click

from devenv.cli.clicktools import PATH

if TYPE_CHECKING:
    from devenv.build.project import Project

SPEC_FILENAME = "devenv.yaml"

spec_option = click.option(
    "--file", "-f", "spec", type=PATH, default=Path(SPEC_FILENAME), show_default=True, help="the spec file"
)


class Context:
    def __init__(self, spec: Path) -> None:
        self.spec = spec

    @cached_property
    def _project(self) -> Project:
        from devenv.build.project import open_project

        return open_project(self.spec)

    def project(self) -> Project:
        return self._project
