"""Project folders made from the shipped templates, for tests."""

from __future__ import annotations

import re
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


def copy_project(
    source: WorkspaceImage, folder: Path, name: str, *, extra: str = "", replace: dict[str, str] | None = None
) -> Path:
    """A copy of a built project (spec + lock) under another workspace name; returns the folder.

    `extra` is appended to devenv.yaml; `replace` edits it (old -> new) first.
    """
    shutil.copytree(source.directory, folder)
    spec = folder / "devenv.yaml"
    text = re.sub(r"(?m)^name: .*$", f"name: {name}", spec.read_text(), count=1)
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    spec.write_text(text + extra)
    return folder


def built_minimal_project(workspace: str) -> Path:
    """A fresh folder under /tmp holding the minimal template named `workspace`, locked and built on the
    local engine (its base made first if missing): the spec a benchmark's `devenv up` starts from."""
    import tempfile

    from devenv.build.base import ensure_base, load_recipe
    from devenv.build.project import build_project, lock_project, open_project
    from devenv.engine.connect import connect

    engine = connect()
    ensure_base(engine, load_recipe("cpu"))
    work = Path(tempfile.mkdtemp(prefix="devenv-bench-", dir="/tmp"))
    spec = copy_template("minimal", work / "project", project_name=workspace)
    project = open_project(spec)
    lock_project(engine, project)
    build_project(engine, project)
    return spec
