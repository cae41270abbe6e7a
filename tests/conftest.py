"""Shared fixtures: a real Docker engine and the bootstrapped CPU base, made once per session."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from devenv.build.base import ensure_base, load_recipe
from devenv.engine.connect import connect
from devenv.lock.models import BaseImage


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    engine = connect()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def cpu_base(client: docker.DockerClient) -> BaseImage:
    """The CPU base, bootstrapped from Debian packages if this engine has none yet."""
    return ensure_base(client, load_recipe("cpu"))
