"""`devenv init`: a project's devenv.yaml (and requirements file), from what the project holds (discover.py),
a template or a Dev Container."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from devenv.errors import FileExists, TemplateNotFound, UsageError
from devenv.resources import templates_dir
from devenv.spec.devcontainer import import_devcontainer
from devenv.spec.discover import Discovery, discover
from devenv.spec.models import SPEC_FILENAME, slugify, valid_name

_NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)


def available_templates() -> list[str]:
    return sorted(path.parent.name for path in templates_dir().glob("*/devenv.yaml"))


def project_name(directory: Path) -> str:
    """A valid workspace name from a folder name ("My Project" -> "my-project")."""
    return slugify(directory.resolve().name) or "workspace"


def check_name(name: str | None) -> None:
    """A name given on the command line goes into YAML as is: checked as a workspace name before anything is
    written (a newline in it would write any field)."""
    if name is not None and not valid_name(name):
        suggestion = slugify(name)
        raise UsageError(
            f"--name {name!r} is not a valid workspace name",
            hint="lowercase letters, digits and '-', at most 63, starting with a letter or digit"
            + (f"; try {suggestion!r}" if suggestion else ""),
        )


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExists(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}",
            hint="pass --force to overwrite, or run init in an empty folder",
        )


def init_from_template(template: str, directory: Path, *, name: str | None = None, force: bool = False) -> list[Path]:
    check_name(name)
    if template not in available_templates():
        raise TemplateNotFound(
            f"no template named {template!r}", hint=f"choose one of: {', '.join(available_templates())}"
        )
    source = templates_dir() / template
    files = sorted(p for p in source.iterdir() if p.is_file())
    targets = [directory / p.name for p in files]
    _refuse_overwrite(targets, force)
    name_line = f"name: {name or project_name(directory)}"
    directory.mkdir(parents=True, exist_ok=True)
    for path, target in zip(files, targets, strict=True):
        text = path.read_text()
        if path.name == SPEC_FILENAME:
            text = _NAME_LINE.sub(lambda _match: name_line, text, count=1)  # a function: no backslash escapes
        target.write_text(text)
    return targets


def init_from_devcontainer(
    devcontainer: Path, directory: Path, *, name: str | None = None, force: bool = False
) -> tuple[list[Path], list[str]]:
    check_name(name)
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


def init_from_repo(
    directory: Path,
    *,
    name: str | None = None,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    repo: bool | None = None,
    force: bool = False,
    as_of: str | None = None,
) -> tuple[Discovery, list[Path]]:
    """Read the project folder and write what it gave; nothing found: the minimal template (with `repo:` when the
    git rule gave one). Nothing is written when any target exists and force is off."""
    check_name(name)
    found = discover(directory, name=name, extras=extras, groups=groups, repo=repo, as_of=as_of)
    if not found.found:
        written = init_from_template("minimal", directory, name=name or found.data["name"], force=force)
        if found.repo:
            _append_repo(directory / SPEC_FILENAME, found.repo)
        return found, written
    targets = {directory / relative: text for relative, text in found.files.items()}
    _refuse_overwrite(list(targets), force)
    for path, text in targets.items():
        path.write_text(text)
    return found, list(targets)


def _append_repo(spec: Path, repo: dict[str, Any]) -> None:
    spec.write_text(spec.read_text() + yaml.safe_dump({"repo": repo}, sort_keys=False))
