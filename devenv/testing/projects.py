"""Project folders made from the shipped templates, for tests."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from devenv.resources import templates_dir


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


@dataclass(frozen=True)
class WorkspaceImage:
    """A locked, built project: its folder (devenv.yaml + devenv.lock) and its image."""

    directory: Path
    tag: str
    image_hash: str
