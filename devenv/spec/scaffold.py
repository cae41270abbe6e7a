"""`devenv init`: a new project's devenv.yaml and requirements.in, from a template or a Dev Container."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from devenv.errors import FileExists, TemplateNotFound
from devenv.resources import templates_dir
from devenv.spec.devcontainer import import_devcontainer
from devenv.spec.models import SPEC_FILENAME, slugify

_NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)


def available_templates() -> list[str]:
    return sorted(path.parent.name for path in templates_dir().glob("*/devenv.yaml"))


def project_name(directory: Path) -> str:
    """A valid workspace name from a folder name ("My Project" -> "my-project")."""
    return slugify(directory.resolve().name) or "workspace"


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExists(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}",
            hint="pass --force to overwrite, or run init in an empty folder",
        )


def init_from_template(
    template: str, directory: Path, *, name: str | None = None, force: bool = False
) -> list[Path]:
    source = templates_dir() / template
    if not (source / SPEC_FILENAME).is_file():
        raise TemplateNotFound(
            f"no template named {template!r}", hint=f"choose one of: {', '.join(available_templates())}"
        )
    files = sorted(p for p in source.iterdir() if p.is_file())
    targets = [directory / p.name for p in files]
    _refuse_overwrite(targets, force)
    directory.mkdir(parents=True, exist_ok=True)
    for path, target in zip(files, targets, strict=True):
        text = path.read_text()
        if path.name == SPEC_FILENAME:
            text = _NAME_LINE.sub(f"name: {name or project_name(directory)}", text, count=1)
        target.write_text(text)
    return targets


def init_from_devcontainer(
    devcontainer: Path, directory: Path, *, name: str | None = None, force: bool = False
) -> tuple[list[Path], list[str]]:
    data, warnings = import_devcontainer(devcontainer, name=name)
    spec_path = directory / SPEC_FILENAME
    requirements = [directory / r for r in data.get("requirements", ["requirements.in"])]
    _refuse_overwrite([spec_path], force)
    directory.mkdir(parents=True, exist_ok=True)
    header = f"# devenv.yaml: imported from {devcontainer}. Reference: docs/spec.md\n"
    spec_path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    written = [spec_path]
    for requirement in requirements:
        if not requirement.exists():
            requirement.write_text("# Python packages for this workspace, one per line.\n")
            written.append(requirement)
    return written, warnings
