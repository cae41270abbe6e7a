"""Shared fixtures: a real Docker engine and the bootstrapped CPU base, made once per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.build.base import ensure_base, load_recipe
from devenv.build.engine import connect
from devenv.lock.models import BaseImage
from devenv.resources import templates_dir


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    engine = connect()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def cpu_base(client: docker.DockerClient) -> BaseImage:
    """The CPU base, bootstrapped from Debian packages if this engine has none yet."""
    return ensure_base(client, load_recipe("cpu"))


def copy_template(name: str, directory: Path, *, project_name: str | None = None) -> Path:
    """A project folder made from a shipped template; returns its devenv.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in (templates_dir() / name).iterdir():
        shutil.copy2(path, directory / path.name)
    spec = directory / "devenv.yaml"
    if project_name:
        text = spec.read_text().replace(f"name: {name}\n", f"name: {project_name}\n", 1)
        spec.write_text(text)
    return spec
