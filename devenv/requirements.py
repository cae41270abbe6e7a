"""What a requirements file may make the resolver read: files of the project, packages from the network.

uv follows `-r`/`-c` includes, local paths, `file:` URLs and `${VAR}` expansions, and its parse errors
quote the lines it read. On the daemon, a requirements file saying `-r /etc/shadow` or
`-r ${DEVENV_HOME}/secrets.key` would put another file's content into an error that members read. So
every line is checked before uv runs: includes must be project files (and are checked in turn), indexes
and direct references are network URLs, and options outside a known set are refused. Problems name the
file and line as the person wrote them; they never quote a file outside the project.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from pathlib import Path

from devenv.confinement import PathOutside, project_path_problem, resolve_inside

MAX_INCLUDED = 64
_FILE_OPTIONS = {"-r", "--requirement", "-c", "--constraint"}
_URL_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links"}
_TAKES_VALUE = _FILE_OPTIONS | _URL_OPTIONS | {"--no-binary", "--only-binary", "--trusted-host", "--hash"}
_FLAGS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes"}
_NETWORK_URL = re.compile(r"(?:git\+)?(?:https?|ssh)://\S+", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\[[A-Za-z0-9._,\s-]*\])?")
_AFTER_NAME = set(" \t;(<>=!~,@")
_COMMENT = re.compile(r"(?:^|\s+)#.*$")


@dataclasses.dataclass(frozen=True)
class RequirementProblem:
    file: str  # relative to the spec's folder
    line: int | None
    message: str


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments dropped and `\\` continuations joined, as pip and uv read them."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        start, sofar = pending if pending is not None else (number, "")
        if raw.endswith("\\"):
            pending = (start, sofar + raw[:-1])
            continue
        pending = None
        line = _COMMENT.sub("", sofar + raw).strip()
        if line:
            lines.append((start, line))
    if pending is not None and pending[1].strip():
        lines.append((pending[0], _COMMENT.sub("", pending[1]).strip()))
    return lines


def _option(tokens: list[str]) -> tuple[str, str | None]:
    """(option, its value) from `-r x`, `-rx`, `--requirement=x`, `--requirement x`."""
    first = tokens[0]
    if first.startswith("--") and "=" in first:
        option, value = first.split("=", 1)
        return option, value
    if not first.startswith("--") and len(first) > 2:
        return first[:2], first[2:].lstrip("=")
    return first, (tokens[1] if first in _TAKES_VALUE and len(tokens) > 1 else None)


def _line_problem(line: str, file: str) -> tuple[str | None, str | None]:
    """(problem, included file relative to the spec's folder) for one logical line."""
    if "${" in line:
        return "environment variables (${...}) are not expanded here; write the value", None
    if "file:" in line.lower():
        return "file: URLs are not supported: name a package, or an http(s) URL", None
    tokens = line.split()
    if tokens[0].startswith("-"):
        option, value = _option(tokens)
        if option in ("-e", "--editable"):
            return "editable installs are not supported: devenv installs wheels from an index", None
        if option in _FILE_OPTIONS:
            if value is None:
                return f"{option} needs a file", None
            if _NETWORK_URL.fullmatch(value):
                return None, None
            included = posixpath.normpath(posixpath.join(posixpath.dirname(file), value))
            problem = project_path_problem(value if value.startswith(("/", "~")) else included)
            if problem is not None:
                return f"{option} {value}: the file {problem}", None
            return None, included
        if option in _URL_OPTIONS:
            if value is None or not _NETWORK_URL.fullmatch(value):
                return f"{option} must be an http(s) URL: local folders and file: URLs are not read", None
            return None, None
        if option in _TAKES_VALUE or option in _FLAGS:
            return None, None
        return f"option {option} is not supported in a devenv requirements file", None
    if (trailing := trailing_option(line)) is not None:
        return f"a trailing {trailing[1]}: uv reads {trailing[1].split()[0]} only on a line of its own", None
    requirement = line.split(";", 1)[0]
    if "@" in requirement:
        url = requirement.split("@", 1)[1].split()
        if not url or not _NETWORK_URL.fullmatch(url[0]):
            return "a direct reference must be an http(s) or git URL, never a local path", None
        return None, None
    if _NETWORK_URL.fullmatch(tokens[0]):
        return None, None
    name = _NAME.match(requirement)
    rest = requirement[name.end() :] if name else requirement
    if name is None or (rest and rest[0] not in _AFTER_NAME):
        return "not a package requirement (local paths are not supported): write NAME or NAME==VERSION", None
    return None, None


def trailing_option(line: str) -> tuple[str, str] | None:
    """(the requirement, the index option after it) for `torch==1.8.0+cu101 -f https://...`, which pip takes and
    uv refuses; None for any other line."""
    tokens = line.split()
    for index, token in enumerate(tokens[1:], start=1):
        if token.startswith("-") and (parsed := _option(tokens[index:]))[0] in _URL_OPTIONS:
            option, value = parsed
            return " ".join(tokens[:index]), f"{option} {value or ''}".strip()
    return None


def included_files(name: str, text: str) -> list[str]:
    """The project files a requirements file includes (`-r`, `-c`), relative to the spec's folder; lines the
    checks refuse are left out (requirement_problems names them)."""
    found = []
    for _number, line in _logical_lines(text):
        problem, included = _line_problem(line, name)
        if problem is None and included is not None:
            found.append(included)
    return found


def requirement_problems(root: Path, names: list[str]) -> list[RequirementProblem]:
    """Every line of the requirement files (and the files they include) that would make the resolver read
    outside `root`, or that it should not be handed; each named by file and line."""
    problems: list[RequirementProblem] = []
    queue: list[tuple[str, RequirementProblem | None]] = [(name, None) for name in names]
    seen: set[str] = set()
    while queue:
        name, origin = queue.pop(0)  # origin: the line that includes it, for messages
        if name in seen:
            continue
        seen.add(name)
        if len(seen) > MAX_INCLUDED:
            return [*problems, RequirementProblem(name, None, f"more than {MAX_INCLUDED} requirement files")]
        try:
            text = resolve_inside(root, name).read_text(encoding="utf-8")
        except (PathOutside, UnicodeDecodeError, OSError) as error:
            why = {
                PathOutside: "leads outside the project folder (a symlink)",
                UnicodeDecodeError: "is not UTF-8 text",
            }.get(type(error), "was not sent with the project: list it under requirements in devenv.yaml")
            where = origin or RequirementProblem(name, None, "")
            problems.append(dataclasses.replace(where, message=f"{name} {why}" if origin else why))
            continue
        for number, line in _logical_lines(text):
            problem, included = _line_problem(line, name)
            if problem is not None:
                problems.append(RequirementProblem(name, number, problem))
            elif included is not None:
                queue.append((included, RequirementProblem(name, number, "")))
    return problems
