"""`devenv init` reading a project's Python side: requirement files, pyproject.toml and the Python version files.

A requirement file is taken whole (`-r FILE`) when the lock can read every line of it; otherwise its lines are
copied into the generated file with the ones the lock refuses rewritten (`-e git+URL#egg=x` -> `x @ git+URL`,
`-e .` -> a create hook, so the project installs from the workspace's code) or named with the reason.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from devenv.requirements import (
    RequirementProblem,
    _line_problem,
    _logical_lines,
    requirement_problems,
    trailing_option,
)
from devenv.spec.discover_model import Found, is_file, plural, read_project_file, toml_error

GENERATED = "requirements.devenv.in"
# The project installs offline from the workspace's code with the locked build backend: no network, no index.
PROJECT_HOOK = "pip install --no-deps --no-build-isolation -e ."
# A version from git metadata (setuptools-scm, hatch-vcs...): an uploaded folder has no .git to read it from
SCM_HOOK = "[ -e .git ] || export SETUPTOOLS_SCM_PRETEND_VERSION=0+devenv; " + PROJECT_HOOK
_LEGACY_BACKEND = ("setuptools>=64", "wheel")  # PEP 517's default, at the version that installs editable (PEP 660)
_SCM = re.compile(
    r"setuptools[-_]scm|hatch[-_]vcs|setuptools[-_]git[-_]versioning|versioningit|"
    r"poetry[-_]dynamic[-_]versioning",
    re.IGNORECASE,
)
MAIN_REQUIREMENTS = (
    "requirements.in",
    "requirements.txt",
    "requirements/base.in",
    "requirements/base.txt",
    "requirements/main.txt",
    "requirements/prod.txt",
    "requirements/production.txt",
    "requirements/requirements.txt",
    "requirements/common.txt",
)
_OTHER_REQUIREMENTS = (
    "requirements-*.txt",
    "requirements-*.in",
    "requirements_*.txt",
    "requirements/*.txt",
    "requirements/*.in",
)
_VERSION = re.compile(r"(?:cpython-|python-?)?(\d+)\.(\d+)(?:\.\S*)?")
_CUDA_INDEX = re.compile(r"/(?:cu\d{2,3}|cuda)", re.IGNORECASE)
_EGG = re.compile(r"#egg=([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)")
_MAX_DEPTH = 8


def gpu_hint(line: str) -> str | None:
    """Why a requirement line suggests a GPU workspace, or None."""
    lowered = line.lower().replace(" ", "")
    if lowered.startswith(("-i", "--index-url", "--extra-index-url", "-f", "--find-links")):
        return "a CUDA wheel index" if _CUDA_INDEX.search(lowered) else None
    if lowered.startswith("nvidia-"):
        return f"{line.split()[0]} (a CUDA wheel)"
    if re.match(r"(jax|jaxlib)\[[^\]]*cuda", lowered) or lowered.startswith("tensorflow[and-cuda]"):
        return f"{line.split(';')[0].strip()} (CUDA extras)"
    if re.search(r"\+cu\d{2,3}", lowered):
        return f"{line.split(';')[0].strip()} (a CUDA build)"
    return None


def add_line(found: Found, line: str, source: str) -> bool:
    """Add one literal requirement line, or name why the lock would refuse it."""
    problem, _ = _line_problem(line, GENERATED)
    if problem is not None:
        found.skip(source, f"requirement {line!r}", problem)
        return False
    found.requirement_lines.append((line, source))
    hint = gpu_hint(line)
    if hint:
        found.gpu.append(f"{hint} in {source}")
    return True


# ---- requirement files ----


def requirement_files(found: Found, picked: set[str]) -> None:
    """The main requirements file, and the others as extras the person picks with --extra NAME."""
    main = next((name for name in MAIN_REQUIREMENTS if is_file(found.root, name)), None)
    if main is not None:
        take_file(found, main)
    others = sorted(
        (
            {
                str(p.relative_to(found.root))
                for pattern in _OTHER_REQUIREMENTS
                for p in found.root.glob(pattern)
                if p.is_file() or p.is_symlink()
            }
            | {name for name in MAIN_REQUIREMENTS if is_file(found.root, name)}
        )
        - {main}
    )
    for other in others:
        if main == "requirements.in" and other == "requirements.txt":
            found.skip(other, "the file", "pinned from requirements.in (pip-compile); devenv.lock pins instead")
            continue
        stem = Path(other).stem
        extra = re.sub(r"^requirements[-_]", "", stem) if "/" not in other else stem
        found.choices.setdefault(f"--extra {extra}", other)
        if extra in picked:
            take_file(found, other)
        else:
            found.skip(other, "the file", f"an extra: take it with --extra {extra}")


def take_file(found: Found, name: str) -> None:
    text = read_project_file(found, name)
    if text is None:
        return
    problems = requirement_problems(found.root, [name])
    if not problems:
        lines = [line for _, line in _logical_lines(text)]
        for line in lines:
            hint = gpu_hint(line)
            if hint:
                found.gpu.append(f"{hint} in {name}")
        found.requirement_files.append(name)
        count = sum(1 for line in lines if not line.startswith("-"))
        found.took(name, f"{count} package{'s' if count != 1 else ''} (the whole file)")
        return
    before = len(found.requirement_lines)
    _copy(found, name, {(p.file, p.line): p for p in problems}, set(), 0)
    count = len(found.requirement_lines) - before
    found.took(name, f"{count} line{'s' if count != 1 else ''} (copied: the lock refuses some of its lines)")


def _copy(
    found: Found, name: str, problems: dict[tuple[str, int | None], RequirementProblem], seen: set[str], depth: int
) -> None:
    """The lines of `name`, includes made relative to the project, refused lines rewritten or named."""
    if name in seen or depth > _MAX_DEPTH:
        return
    seen.add(name)
    text = read_project_file(found, name)
    if text is None:
        return
    folder = posixpath.dirname(name)
    for number, line in _logical_lines(text):
        problem = problems.get((name, number))
        tokens = line.split()
        option, value = (tokens[0], tokens[1] if len(tokens) > 1 else "") if tokens[0].startswith("-") else ("", "")
        if "=" in option:
            option, value = option.split("=", 1)
        if problem is None and option in ("-r", "--requirement", "-c", "--constraint") and "://" not in value:
            included = posixpath.normpath(posixpath.join(folder, value))
            inner = requirement_problems(found.root, [included])
            if not inner:
                found.requirement_lines.append((f"{option} {included}", name))
            elif option in ("-r", "--requirement"):
                problems.update({(p.file, p.line): p for p in inner})
                _copy(found, included, problems, seen, depth + 1)
            else:
                found.skip(name, f"line {number} {line!r}", "the constraints file has lines the lock refuses")
        elif problem is None:
            add_line(found, line, name)
        else:
            _refused(found, name, number, line, problem.message)


def _refused(found: Found, name: str, number: int, line: str, why: str) -> None:
    """A line the lock refuses: editable and local installs become create hooks, VCS editables direct refs, a
    trailing index option a line of its own."""
    if (split := trailing_option(line)) is not None:
        requirement, option = split
        add_line(found, option, name)
        add_line(found, requirement, name)
        found.note(name, f"{name}: line {number} {line!r} split in two: {option!r} on a line of its own")
        return
    tokens = line.split()
    editable = tokens[0] in ("-e", "--editable") or tokens[0].startswith(("-e", "--editable="))
    target = (
        tokens[1]
        if len(tokens) > 1 and tokens[0] in ("-e", "--editable")
        else tokens[0].removeprefix("--editable=").removeprefix("-e")
        if editable
        else tokens[0]
    )
    where = f"line {number} {line!r}"
    if "://" in target:
        egg = _EGG.search(target)
        if egg and target.startswith(("git+", "hg+", "https://", "http://")):
            add_line(found, f"{egg[1]} @ {_EGG.sub('', target)}", name)
            found.note(name, f"{name}: {where} rewritten as {egg[1]} @ URL (editable installs are not locked)")
        else:
            found.skip(name, where, why)
        return
    local = target.startswith((".", "/")) or (editable and "/" not in target and "=" not in target)
    if not local or "${" in target:
        found.skip(name, where, why)
        return
    relative = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if relative.startswith("..") or target.startswith("/"):
        found.skip(name, where, "a local path outside the project")
        return
    if relative == ".":
        project_install(found, name)
    else:
        found.hook(f"pip install --no-deps {'-e ' if editable else ''}./{relative}", name)


# ---- the project itself ----


def project_install(found: Found, source: str) -> None:
    """The project installs in the workspace from its code (a create hook), with its build backend in the lock."""
    requires, where = _build_requires(found)
    new = [line for line in requires if line not in {taken for taken, _ in found.requirement_lines}]
    added = sum(add_line(found, line, where) for line in new)
    if added:
        found.took(
            where, f"{plural(added, 'build requirement')} (the project installs offline, with the locked backend)"
        )
    found.hook(SCM_HOOK if any(_SCM.search(line) for line in requires) else PROJECT_HOOK, source)


def _build_requires(found: Found) -> tuple[list[str], str]:
    """[build-system] requires of pyproject.toml, else the setuptools PEP 517 assumes."""
    text = read_project_file(found, "pyproject.toml") if is_file(found.root, "pyproject.toml") else None
    if text is not None:
        try:
            table = tomllib.loads(text).get("build-system")
        except tomllib.TOMLDecodeError as error:
            raise toml_error("pyproject.toml", error) from None
        requires = table.get("requires") if isinstance(table, dict) else None
        if isinstance(requires, list) and all(isinstance(line, str) for line in requires):
            return list(requires), "pyproject.toml [build-system]"
    return list(_LEGACY_BACKEND), "the default build backend"


# ---- pyproject.toml ----


def pyproject(found: Found, extras: set[str], groups: set[str]) -> None:
    if not is_file(found.root, "pyproject.toml"):
        if is_file(found.root, "setup.py") or is_file(found.root, "setup.cfg"):
            setup = "setup.py" if is_file(found.root, "setup.py") else "setup.cfg"
            project_install(found, setup)
            found.skip(setup, "install_requires", "not read (setup.py is code); list them in a requirements file")
        return
    text = read_project_file(found, "pyproject.toml")
    if text is None:
        return
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise toml_error("pyproject.toml", error) from None
    project = data.get("project") if isinstance(data.get("project"), dict) else None
    poetry = data.get("tool", {}).get("poetry") if isinstance(data.get("tool"), dict) else None
    if project is not None:
        _project_table(found, project, extras)
    elif isinstance(poetry, dict):
        _poetry(found, poetry, groups)
    if project is not None or (isinstance(poetry, dict) and "build-system" in data) or is_file(found.root, "setup.py"):
        project_install(found, "pyproject.toml")
    table = data.get("dependency-groups")
    if isinstance(table, dict):
        for group in table:
            found.choices.setdefault(f"--group {group}", "pyproject.toml [dependency-groups]")
        included: set[str] = set()
        for group in sorted(groups & set(table)):
            if group in included:  # already taken through another group's include-group
                continue
            lines = _group_lines(table, group, included)
            taken = sum(add_line(found, line, "pyproject.toml") for line in lines)
            found.took("pyproject.toml", f"{plural(taken, 'package')} of [dependency-groups] {group}")
        for group in sorted(set(table) - groups - included):
            found.skip("pyproject.toml", f"[dependency-groups] {group}", f"take it with --group {group}")


def _project_table(found: Found, project: dict[str, Any], extras: set[str]) -> None:
    name = canonicalize_name(str(project.get("name", "")))
    optional = project.get("optional-dependencies")
    optional = optional if isinstance(optional, dict) else {}
    deps = project.get("dependencies")
    used: set[str] = set()  # extras the dependencies pull in themselves (`myproj[fast]`)
    if isinstance(deps, list):
        lines = _expand([str(d) for d in deps], name, optional, used)
        taken = sum(add_line(found, line, "pyproject.toml") for line in lines)
        within = f" (with extra {', '.join(sorted(used))})" if used else ""
        found.took("pyproject.toml", f"{plural(taken, 'package')} of [project] dependencies{within}")
    elif "dependencies" in project.get("dynamic", []):
        found.skip("pyproject.toml", "[project] dependencies", "dynamic (computed by the build backend); not read")
    for extra in optional:
        found.choices.setdefault(f"--extra {extra}", "pyproject.toml [project.optional-dependencies]")
    for extra in sorted(extras & set(optional)):
        lines = _expand([str(d) for d in optional[extra] or []], name, optional, {extra})
        taken = sum(add_line(found, line, "pyproject.toml") for line in lines)
        found.took("pyproject.toml", f"{plural(taken, 'package')} of extra {extra}")
    for extra in sorted(set(optional) - extras - used):
        found.skip("pyproject.toml", f"extra {extra}", f"take it with --extra {extra}")
    requires = project.get("requires-python")
    if isinstance(requires, str):
        found.python_ranges.append((requires, "pyproject.toml"))


def _expand(lines: list[str], name: str, optional: dict[str, Any], seen: set[str]) -> list[str]:
    """Dependencies with the project's own extras (`myproj[test]`) replaced by their contents."""
    result: list[str] = []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            result.append(line)
            continue
        if name and canonicalize_name(requirement.name) == name:
            for extra in sorted(requirement.extras - seen):
                seen.add(extra)
                result.extend(_expand([str(d) for d in optional.get(extra) or []], name, optional, seen))
        else:
            result.append(line)
    return result


def _group_lines(table: dict[str, Any], group: str, seen: set[str]) -> list[str]:
    if group in seen:
        return []
    seen.add(group)
    lines: list[str] = []
    for item in table.get(group) or []:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
            lines.extend(_group_lines(table, item["include-group"], seen))
    return lines


def _poetry(found: Found, poetry: dict[str, Any], groups: set[str]) -> None:
    deps = found_deps if isinstance(found_deps := poetry.get("dependencies"), dict) else {}
    taken = _poetry_lines(found, deps, "[tool.poetry.dependencies]")
    found.took("pyproject.toml", f"{plural(taken, 'package')} of [tool.poetry.dependencies]")
    table = found_table if isinstance(found_table := poetry.get("group"), dict) else {}
    for group, body in table.items():
        found.choices.setdefault(f"--group {group}", "pyproject.toml [tool.poetry.group]")
        group_deps = body.get("dependencies") if isinstance(body, dict) else None
        if group in groups and isinstance(group_deps, dict):
            count = _poetry_lines(found, group_deps, f"[tool.poetry.group.{group}]")
            found.took("pyproject.toml", f"{plural(count, 'package')} of poetry group {group}")
        elif group not in groups:
            found.skip("pyproject.toml", f"poetry group {group}", f"take it with --group {group}")


def _poetry_lines(found: Found, deps: dict[str, Any], table: str) -> int:
    taken = 0
    for name, value in deps.items():
        if name == "python" and isinstance(value, str):
            converted = poetry_constraint(value)
            if converted:
                found.python_ranges.append((converted, "pyproject.toml"))
            continue
        version, extras = (value, []) if isinstance(value, str) else (None, [])
        if isinstance(value, dict) and set(value) <= {"version", "extras"}:
            version, extras = str(value.get("version", "*")), list(value.get("extras", []))
        constraint = poetry_constraint(version) if version is not None else None
        if constraint is None:
            found.skip("pyproject.toml", f"{table} {name}", "not a plain version (git, path, markers): add it by hand")
            continue
        extra = f"[{','.join(extras)}]" if extras else ""
        taken += add_line(found, f"{name}{extra}{constraint}", "pyproject.toml")
    return taken


def poetry_constraint(value: str) -> str | None:
    """A PEP 440 specifier from poetry's ("^1.2" -> ">=1.2,<2.0"), "" for any version, None when unknown."""
    text = value.strip()
    if text in ("", "*"):
        return ""
    if text[0] in "^~" and not text.startswith("~="):
        base = text[1:].strip()
        parts = base.split(".")
        if not all(part.isdigit() for part in parts):
            return None
        numbers = [int(part) for part in parts]
        if text[0] == "^":
            index = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1)
        else:
            index = 1 if len(numbers) > 1 else 0
        upper = [*numbers[:index], numbers[index] + 1]
        return f">={base},<{'.'.join(map(str, upper))}"
    if text[0].isdigit():
        text = f"=={text}"
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        return None
    return text


# ---- the Python version ----


def python_files(found: Found) -> None:
    for name, what in ((".python-version", "pyenv"), ("runtime.txt", "runtime.txt")):
        if not is_file(found.root, name):
            continue
        text = read_project_file(found, name) or ""
        first = next((line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
        match = _VERSION.fullmatch(first)
        if match is None:
            found.skip(name, f"{first!r}", f"not a CPython version that {what} names as 3.X")
        else:
            found.python_pins.append((f"{match[1]}.{match[2]}", name))
