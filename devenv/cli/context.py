"""What every command shares: the spec path, the engine URL, and lazily made clients."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click

from devenv.cli.clicktools import PATH

if TYPE_CHECKING:
    from devenv.build.project import Project
    from devenv.engine.sdk import DockerClient

SPEC_FILENAME = "devenv.yaml"

spec_option = click.option(
    "--file", "-f", "spec", type=PATH, default=Path(SPEC_FILENAME), show_default=True, help="the spec file"
)
engine_option = click.option("--engine", help="Docker engine URL (default: DOCKER_HOST or the local socket)")


class Context:
    def __init__(self, spec: Path, engine: str | None) -> None:
        self.spec = spec
        self.engine = engine

    @cached_property
    def _project(self) -> Project:
        from devenv.build.project import open_project

        return open_project(self.spec)

    def project(self) -> Project:
        return self._project

    @cached_property
    def _client(self) -> DockerClient:
        from devenv.engine.connect import connect

        return connect(self.engine)

    def client(self) -> DockerClient:
        return self._client
