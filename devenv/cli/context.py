"""What every command shares: the spec path, the engine URL, and lazily made clients."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import docker

    from devenv.build.project import Project

spec_option = Annotated[Path, typer.Option("--file", "-f", help="the spec file", show_default=True)]
engine_option = Annotated[str | None, typer.Option("--engine", help="Docker engine URL (default: DOCKER_HOST or "
                                                                    "the local socket)")]


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
    def _client(self) -> docker.DockerClient:
        from devenv.build.engine import connect

        return connect(self.engine)

    def client(self) -> docker.DockerClient:
        return self._client
