"""Backends are found by entry points (group `devenv.backends`), the built-in ones too.

An entry point names a BackendFactory (devenv.backends.base): the typed options of a daemon.yaml entry and how to
make the backend; a plain callable taking (name, **options) is still accepted from older plugins. A backend whose
SDK is missing is listed with the reason it cannot load, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "devenv.backends"


@dataclass(frozen=True)
class BackendType:
    """One installed backend type: its factory, or why it cannot be loaded."""

    name: str
    factory: Any | None
    error: str | None = None


def backend_types() -> dict[str, BackendType]:
    found: dict[str, BackendType] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[point.name] = BackendType(point.name, point.load())
        except Exception as exc:  # a broken plugin is reported, not fatal
            found[point.name] = BackendType(point.name, None, f"{exc.__class__.__name__}: {exc}")
    if "docker" not in found:  # running from a source tree without an install: the built-ins still work
        from devenv.backends.docker_models import DOCKER

        found["docker"] = BackendType("docker", DOCKER)
    if "aws" not in found:
        from devenv.backends.cloud.models import AWS

        found["aws"] = BackendType("aws", AWS)
    if "slurm" not in found:
        from devenv.backends.slurm.models import SLURM

        found["slurm"] = BackendType("slurm", SLURM)
    return found
