"""`devenv init` taking the requirement files a devcontainer's own build installs.

A devcontainer's Dockerfile runs in its build context: by default the folder of devcontainer.json, else
`build.context` relative to it. So `COPY requirements.txt .` and `pip install -r requirements.txt` in
.devcontainer/Dockerfile mean .devcontainer/requirements.txt, not the project's. The devcontainer import
(devcontainer.py) only names such lines; here the file they mean goes into the lock, like a root
requirements.txt. A devcontainer with no Dockerfile whose folder holds a requirements.txt installs it from its
commands or scripts (the Dev Containers templates do): it is taken when nothing else gave requirements.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from typing import Any

from devenv.spec.devcontainer import strip_jsonc
from devenv.spec.discover_docker import DOCKERFILES
from devenv.spec.discover_model import Found, is_file, read_project_file
from devenv.spec.discover_python import take_file

_PIP_INSTALL = re.compile(r"\bpip3?\s+install\b[^&;|\n]*")
_REQUIREMENT_FLAG = re.compile(r"(?:^|\s)(?:-r|--requirement)(?:=|\s+)(\S+)")
_COPY = re.compile(r"(?im)^\s*(?:COPY|ADD)\s+(.+)$")


def devcontainer_requirements(found: Found, path: str) -> None:
    """Take the requirement files the devcontainer at `path` (relative to the project) installs."""
    config = _config(found, path)
    folder = posixpath.dirname(path) or "."
    build: dict[str, Any] = found_build if isinstance(found_build := config.get("build"), dict) else {}
    dockerfile = build.get("dockerfile", config.get("dockerFile"))
    context = build.get("context", config.get("context", "."))
    context = _inside(posixpath.join(folder, context)) if isinstance(context, str) else None
    if not isinstance(dockerfile, str):
        beside = _inside(posixpath.join(folder, "requirements.txt"))
        if folder != "." and beside and is_file(found.root, beside) and not _has_requirements(found):
            _take(found, beside, f"{path} has no Dockerfile: its commands install the requirements.txt beside it")
        return
    target = _inside(posixpath.join(folder, dockerfile))
    if target is None or target in DOCKERFILES or context is None or not is_file(found.root, target):
        return  # a root Dockerfile is read by discover_docker, relative to the project
    text = read_project_file(found, target) or ""
    for name in _requirement_names(text):
        relative = _inside(posixpath.join(context, name.lstrip("/") if name.startswith("/") else name))
        if relative and is_file(found.root, relative):
            _take(found, relative, f"{target} installs it from its build context {context}/")


def _config(found: Found, path: str) -> dict[str, Any]:
    try:
        config = json.loads(strip_jsonc(read_project_file(found, path) or "{}"))
    except ValueError:
        return {}  # the devcontainer import reports the syntax error, located
    return config if isinstance(config, dict) else {}


def _inside(path: str) -> str | None:
    """A project-relative path, or None when it leaves the project."""
    normal = posixpath.normpath(path)
    return None if normal == ".." or normal.startswith("../") or normal.startswith("/") else normal


def _has_requirements(found: Found) -> bool:
    return bool(found.requirement_files or found.requirement_lines)


def _take(found: Found, relative: str, why: str) -> None:
    if relative not in found.requirement_files:
        found.note(relative, f"{relative}: {why}")
        take_file(found, relative)


def _requirement_names(text: str) -> list[str]:
    """The context paths of the files `pip install -r X` reads: X's COPY source when a COPY brought it."""
    joined = text.replace("\\\n", " ")
    copied: dict[str, str] = {}  # basename -> the source path in the context
    for body in _COPY.findall(joined):
        try:
            words = [w for w in shlex.split(body) if not w.startswith("--")]
        except ValueError:
            continue
        for source in words[:-1]:
            copied.setdefault(posixpath.basename(source), source)
    names: list[str] = []
    for flag in (f for pip in _PIP_INSTALL.findall(joined) for f in _REQUIREMENT_FLAG.findall(pip)):
        name = copied.get(posixpath.basename(flag), posixpath.basename(flag))
        if name not in names:
            names.append(name)
    return names
