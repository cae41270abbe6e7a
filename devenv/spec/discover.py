"""`devenv init` with no template: read the project folder and say what devenv.yaml it makes, and from where.

People arrive with a repository, not a template: requirement files, a pyproject.toml, a conda environment, a
Dockerfile, a devcontainer, a git remote. `discover` reads them (discover_*.py, one reader each) into a typed
`Discovery`: the spec data (validated), the files to write, and one note per thing taken or not used and why.
It writes nothing and prints nothing; scaffold.py writes, the CLI prints.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import ValidationError

from devenv.errors import SpecInvalid, UsageError
from devenv.resources import images_dir
from devenv.spec.devcontainer import import_devcontainer
from devenv.spec.discover_conda import conda_env
from devenv.spec.discover_debian import system_packages
from devenv.spec.discover_devcontainer import devcontainer_requirements
from devenv.spec.discover_docker import apt_files, dockerfile
from devenv.spec.discover_git import git_repo, last_change
from devenv.spec.discover_model import Found, Note, is_file
from devenv.spec.discover_python import GENERATED, PROJECT_HOOK, pyproject, python_files, requirement_files
from devenv.spec.loader import issues_from_validation_error
from devenv.spec.models import SPEC_FILENAME, Spec, slugify

DEVCONTAINERS = (".devcontainer/devcontainer.json", ".devcontainer.json")
BASES = ("cpu", "cuda")
# Loose requirements resolved against today's index pull releases the project never met (a pyarrow that needs
# NumPy 2 beside a pinned numpy 1.23, a setuptools without pkg_resources): dependency files last changed longer
# ago than this get requirements_as_of, so the lock sees PyPI as their author did.
STALE_AFTER = dt.timedelta(days=90)
# ... but not before the base's Python had wheels for the common compiled packages (cp311: torch 2.0 and
# tensorflow 2.12 by spring 2023; cp312: torch 2.2, tensorflow 2.16 by March 2024): an older index would offer
# little that installs. A Python missing here gets no day.
WHEELS_SINCE = {"3.11": "2023-06-01", "3.12": "2024-03-01"}


@dataclass(frozen=True)
class Discovery:
    """What reading a project gave: devenv.yaml's data, every file to write (devenv.yaml too), and the notes."""

    data: dict[str, Any]
    files: dict[str, str]  # path relative to the project -> text
    notes: list[Note]
    sources: list[str]  # files read and used, in reading order ("git" for the remote)
    choices: dict[str, str] = field(default_factory=dict)  # "--extra dev" -> where it is defined
    found: bool = True  # False: no project file gave anything (init falls back to a template)
    repo: dict[str, Any] | None = None


def base_python(base: str) -> str:
    """The one Python version a base image provides (images/BASE/recipe.yaml); the lock requires exactly it."""
    data = yaml.safe_load((images_dir() / base / "recipe.yaml").read_text())
    return str(data["python"])


def discover(
    directory: Path,
    *,
    name: str | None = None,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    repo: bool | None = None,
    as_of: str | None = None,
) -> Discovery:
    """Read the project at `directory`. `repo`: None follows the rule in discover_git, True/False force it.
    `as_of`: the day the dependency files were last changed (YYYY-MM-DD), "today" for none; by default git's."""
    if not directory.is_dir():
        raise UsageError(
            f"{directory} is not a folder: there is no project to read",
            hint="create it, or pass --template NAME (or --from devcontainer.json) to start a new one",
        )
    found = Found(directory)
    requirement_files(found, set(extras))
    pyproject(found, set(extras), set(groups))
    conda_env(found)
    python_files(found)
    apt_files(found)
    dockerfile(found)
    devcontainer = _devcontainer(found, name)
    system_packages(found)
    _check_choices(found, extras, groups)
    repo_data = git_repo(found, repo)
    base = "cuda" if found.system_cuda else "cpu"
    if found.system_cuda:
        found.notes.append(Note("took", "base", f"base cuda, for system CUDA: {'; '.join(found.system_cuda)}"))
    data: dict[str, Any] = {"name": name or slugify(directory.resolve().name) or "workspace"}
    if base != "cpu":
        data["base"] = base
    data["python"] = _python(found, base)
    data["requirements"], files = _requirements(found)
    if found.apt:
        data["apt"] = sorted(found.apt)
    if found.hooks:
        data["hooks"] = {"create": list(found.hooks)}
    if repo_data:
        data["repo"] = repo_data
    locked_files = {*data["requirements"], *found.requirement_files, *(source for _, source in found.requirement_lines)}
    for key, value in devcontainer.items():  # its keys win for what they set (not the name); hooks add up
        if key == "name":
            continue  # the folder's name (or --name): "Python 3" of a template would name every workspace alike
        if key == "hooks" and isinstance(value, dict):
            hooks = data.setdefault("hooks", {})
            for stage, steps in value.items():
                merged = list(hooks.get(stage, []))
                for step in steps:
                    if (locked := _installs_locked(step, locked_files)) is not None:
                        found.note(
                            "devcontainer",
                            f"hooks.{stage} `{step}` left out: {locked} is in devenv.lock "
                            "already (installing it again would change the locked set)",
                        )
                    elif step not in merged and not (PROJECT_HOOK in merged and _installs_project(step)):
                        merged.append(step)
                hooks[stage] = merged
        elif key == "resources" and isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        elif key == "apt" and isinstance(value, list):
            data[key] = sorted({*data.get(key, []), *value})
        else:
            data[key] = value
    offered = base_python(data.get("base", "cpu"))
    if data["python"] != offered:  # the devcontainer chose the base: its Python is the one the lock accepts
        found.note("python", f"python {offered}: what the {data['base']} base the devcontainer asks for provides")
        data["python"] = offered
    day, before_wheels = _as_of(found, data["python"], as_of)
    if day is not None:
        data["requirements_as_of"] = day
    if _written_for_older_python(found, data["python"], before_wheels):
        data["old_pins"] = "move"
    data = {key: data[key] for key in Spec.model_fields if key in data}  # devenv.yaml's usual order
    _gpu(found, data)
    try:
        Spec.model_validate(data)
    except ValidationError as exc:  # every reader checks its values: a bug guard, located at devenv.yaml
        raise SpecInvalid(issues_from_validation_error(exc, SPEC_FILENAME)) from None
    sources = [s for s in found.sources if s != "git"]
    files[SPEC_FILENAME] = _header(found.sources) + yaml.safe_dump(data, sort_keys=False)
    return Discovery(
        data=data,
        files=files,
        notes=list(found.notes),
        sources=list(found.sources),
        choices=dict(found.choices),
        found=bool(sources),
        repo=repo_data,
    )


def _as_of(found: Found, python: str, given: str | None) -> tuple[str | None, bool]:
    """(requirements_as_of, whether the files predate the base Python's wheels): the day the dependency files last
    changed when that is long ago (see STALE_AFTER), not before the base's Python had wheels; a note says why."""
    files = [source for source in found.sources if source != "git"]
    if given is not None:
        if given == "today":
            return None, False
        found.notes.append(
            Note("took", "--as-of", f"requirements_as_of {given}: the lock reads PyPI as it stood that day (--as-of)")
        )
        return given, False
    changed = last_change(found.root, files)
    if changed is None or dt.date.fromisoformat(changed) > dt.datetime.now(dt.UTC).date() - STALE_AFTER:
        return None, False
    floor = WHEELS_SINCE.get(python)
    if floor is None:
        return None, False
    day = max(changed, floor)
    why = (
        f"the dependency files last changed on {changed}"
        if day == changed
        else f"the dependency files last changed on {changed}; not earlier, Python {python} had few wheels before"
    )
    found.notes.append(
        Note(
            "took",
            "git",
            f"requirements_as_of {day} ({why}): the lock reads PyPI as it stood "
            "then, so loose requirements get what their author had (`--as-of today` "
            "for today's index)",
        )
    )
    return day, day != changed


def _written_for_older_python(found: Found, python: str, before_wheels: bool) -> bool:
    """Whether the project was written for a Python older than the base's (it names only such, or its dependency
    files predate the base Python's wheels): its exact pins were then made for one, and those without a wheel for
    the base's Python are moved (old_pins: move), with a note saying so."""
    offered = Version(python)
    older = [f"{version} ({source})" for version, source in found.python_pins if _older(version, offered)]
    for spec, source in found.python_ranges:
        try:
            allowed = SpecifierSet(spec)
        except InvalidSpecifier:
            continue
        if offered not in allowed and any(f"3.{minor}" in allowed for minor in range(6, offered.minor)):
            older.append(f"{spec} ({source})")
    if before_wheels and not found.python_pins:
        older.append(f"its dependency files predate Python {python}'s wheels")
    if not older or len(older) < len(found.python_pins):
        return False  # no older Python named, or the base's Python named too
    found.note(
        "python",
        f"old_pins: move: the project was written for an older Python ({', '.join(older)}), so an "
        f"exact pin that publishes no wheel for Python {python} moves to the nearest release that "
        "does; `devenv lock` names each move (set old_pins: refuse to stop instead)",
    )
    return True


def _older(version: str, than: Version) -> bool:
    try:
        return Version(version) < than
    except InvalidVersion:
        return False


def _devcontainer(found: Found, name: str | None) -> dict[str, Any]:
    path = next((p for p in DEVCONTAINERS if is_file(found.root, p)), None)
    if path is None:
        return {}
    devcontainer_requirements(found, path)
    data, warnings = import_devcontainer(found.root / path, name=name)
    taken = [key for key in data if key != "name"]
    found.took(path, f"{', '.join(taken) or 'the name'} (devcontainer import)")
    for warning in warnings:
        found.notes.append(Note("note", path, f"{path}: {warning}"))
    return data


_PIP_R = re.compile(
    r"(?:python3? -m )?pip3? install(?: (?:-U|--upgrade|-q|--quiet|--no-cache-dir))* "
    r"(?:-r|--requirement) ?(\S+)"
)


def _installs_locked(step: object, requirements: set[str]) -> str | None:
    """The requirements file a hook only installs, when the lock has it already (`pip install -r requirements.txt`)."""
    match = _PIP_R.fullmatch(step.strip()) if isinstance(step, str) else None
    if match is None:
        return None
    name = match.group(1).removeprefix("./")
    return name if name in requirements else None


def _installs_project(step: object) -> bool:
    """`pip install -e .` in some spelling: the project hook init writes already does it (without touching the
    locked set)."""
    words = step.split() if isinstance(step, str) else []
    return "install" in words and bool({"-e", "--editable"} & set(words)) and words[-1] in (".", "./")


def _check_choices(found: Found, extras: tuple[str, ...], groups: tuple[str, ...]) -> None:
    for flag, names in (("--extra", extras), ("--group", groups)):
        available = sorted(choice.split(" ", 1)[1] for choice in found.choices if choice.startswith(flag + " "))
        unknown = [n for n in names if n not in available]
        if unknown:
            raise UsageError(
                f"{flag} {', '.join(unknown)}: the project defines no such {flag[2:]}",
                hint=f"available: {', '.join(available)}" if available else f"it defines no {flag[2:]}s",
            )


def _python(found: Found, base: str) -> str:
    """The base's Python (the only one the lock accepts), with a note for each pin or range the project gives."""
    offered = base_python(base)
    pins = found.python_pins
    if len({version for version, _ in pins}) > 1:
        said = ", ".join(f"{source} says {version}" for version, source in pins)
        found.note("python", f"python: the project's files disagree ({said})")
    for version, source in pins:
        if version == offered:
            found.took(source, f"python {version}")
            continue
        elsewhere = [b for b in BASES if b != base and base_python(b) == version]
        also = f"; the {elsewhere[0]} base provides {version} (base: {elsewhere[0]})" if elsewhere else ""
        found.skip(source, f"python {version}", f"cannot be met: the {base} base provides Python {offered} only{also}")
    for spec, source in found.python_ranges:
        try:
            allowed = offered in SpecifierSet(spec)
        except InvalidSpecifier:
            found.skip(source, f"python {spec!r}", "not a version specifier")
            continue
        if allowed:
            found.took(source, f"python {offered} (allowed by {spec})")
        else:
            found.skip(
                source,
                f"python {spec}",
                f"cannot be met: the {base} base provides Python {offered}, which it does not allow",
            )
    if not pins and not found.python_ranges:
        found.note("python", f"python {offered}: what the {base} base provides (the project names no version)")
    return offered


def _requirements(found: Found) -> tuple[list[str], dict[str, str]]:
    """Files the lock reads whole are listed as they are; every other line goes into one generated file."""
    listed = list(dict.fromkeys(found.requirement_files))
    if not found.requirement_lines:
        return listed, {}
    by_source: dict[str, list[str]] = {}
    seen: set[str] = set()
    for line, source in found.requirement_lines:
        if line not in seen:
            seen.add(line)
            by_source.setdefault(source, []).append(line)
    sources = ", ".join(by_source)
    text = (
        f"# Written by `devenv init` from {sources}: edit this file, or the sources and run init again.\n"
        "# `devenv lock` pins every package (with hashes) into devenv.lock.\n"
    )
    for source, lines in by_source.items():
        text += f"\n# from {source}\n" + "".join(f"{line}\n" for line in lines)
    return [*listed, GENERATED], {GENERATED: text}


def _gpu(found: Found, data: dict[str, Any]) -> None:
    if not found.gpu:
        return
    why = "; ".join(dict.fromkeys(found.gpu))
    if data.get("resources", {}).get("gpu"):
        found.note("gpu", f"gpu: the devcontainer asks for one; the project also uses CUDA ({why})")
        return
    found.note(
        "gpu",
        f"suggestion: add `resources: {{gpu: 1}}` to devenv.yaml to run on a GPU ({why}); the "
        f"{data.get('base', 'cpu')} base works with GPUs: PyPI's CUDA wheels carry their own runtime",
    )


def _header(sources: list[str]) -> str:
    read = ", ".join(sources) if sources else "nothing (no project files found)"
    return (
        f"# devenv.yaml: written by `devenv init` from what it read in the project: {read}.\n"
        "# How init reads a repository: docs/init.md. Every field: docs/spec.md\n"
    )
