"""The shared pieces of `devenv init`'s repository reading: notes, what the readers found, safe file reading.

Every reader (requirements, pyproject, conda, Dockerfile, git) adds to one `Found`, and says for each thing
whether it was taken or not used and why, so the person sees where each line of devenv.yaml came from.
Files are read only inside the project folder: a symlink leading out is named, never opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from devenv.confinement import PathOutside, resolve_inside
from devenv.errors import SpecInvalid, SpecIssue
from devenv.spec.bookworm import bookworm_name

MAX_FILE_BYTES = 1024 * 1024
NoteKind = Literal["took", "not used", "note"]

_VERSIONED_DEV = re.compile(r"python3\.[0-9]+-dev")
_PYTHON_APT = re.compile(r"python[23]?(?:\.[0-9]+)?|python-.+|python3(?:\.[0-9]+)?-(?:pip|venv|distutils)")


@dataclass(frozen=True)
class Note:
    """One line of init's summary: what was taken (or not) from which file."""

    kind: NoteKind
    source: str  # the file (relative to the project) or "git"
    text: str

    def render(self) -> str:
        return f"{self.kind:<8}  {self.text}"


@dataclass
class Found:
    """What the readers found, each item with the file it came from."""

    root: Path
    notes: list[Note] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    python_pins: list[tuple[str, str]] = field(default_factory=list)  # (MAJOR.MINOR, source)
    python_ranges: list[tuple[str, str]] = field(default_factory=list)  # (PEP 440 specifier, source)
    requirement_files: list[str] = field(default_factory=list)  # project files taken whole (`-r FILE`)
    requirement_lines: list[tuple[str, str]] = field(default_factory=list)  # (line, source)
    apt: dict[str, str] = field(default_factory=dict)  # package -> source
    hooks: list[str] = field(default_factory=list)
    system_cuda: list[str] = field(default_factory=list)  # why base: cuda
    gpu: list[str] = field(default_factory=list)  # why a GPU is suggested
    choices: dict[str, str] = field(default_factory=dict)  # "--extra dev" -> where it is defined

    def took(self, source: str, text: str) -> None:
        self.notes.append(Note("took", source, f"{text} from {source}"))
        self.source(source)

    def skip(self, source: str, what: str, why: str) -> None:
        self.notes.append(Note("not used", source, f"{source}: {what} ({why})"))

    def note(self, source: str, text: str) -> None:
        self.notes.append(Note("note", source, text))

    def source(self, name: str) -> None:
        if name not in self.sources:
            self.sources.append(name)

    def hook(self, command: str, source: str) -> None:
        if command not in self.hooks:
            self.hooks.append(command)
            self.took(source, f"hooks.create `{command}`")

    def add_apt(self, package: str, source: str) -> None:
        """A Debian package (bookworm's name for an old Ubuntu one); another Python's packages are the base's (its
        Python is the one the venv uses)."""
        package, renamed = bookworm_name(original := package)
        if renamed:
            self.note(source, f"{source}: apt {original} taken as {package} ({renamed})")
        if _VERSIONED_DEV.fullmatch(package):
            self.note(source, f"apt {package} taken as python3-dev (the headers of the base's Python)")
            package = "python3-dev"
        elif _PYTHON_APT.fullmatch(package):
            self.skip(source, f"apt package {package}", "the base provides Python; Python packages go in requirements")
            return
        self.apt.setdefault(package, source)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def is_file(root: Path, relative: str) -> bool:
    try:
        return (root / relative).is_file()
    except OSError:
        return False


def read_project_file(found: Found, relative: str) -> str | None:
    """The text of a project file, or None (with a note) when it leads outside the project or cannot be read."""
    try:
        path = resolve_inside(found.root, relative)
        if path.stat().st_size > MAX_FILE_BYTES:
            found.skip(relative, "the file", f"over {MAX_FILE_BYTES // 1024} KiB; not read")
            return None
        return path.read_text(encoding="utf-8-sig")
    except PathOutside:
        found.skip(relative, "the file", "it leads outside the project folder (a symlink); not read")
    except UnicodeDecodeError:
        found.skip(relative, "the file", "not UTF-8 text")
    except OSError as error:
        found.skip(relative, "the file", f"cannot be read: {error.strerror or error}")
    return None


def parse_error(file: str, kind: str, message: str, line: int | None, column: int | None = None) -> SpecInvalid:
    """A located error for a project file init could not parse (the person fixes the file, or moves it away)."""
    return SpecInvalid(
        [
            SpecIssue(
                file,
                line,
                column,
                "",
                f"invalid {kind}: {message}",
                hint=f"fix {file}, or pass --template NAME to start without reading the project",
            )
        ]
    )


_AT_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def toml_error(file: str, error: Exception) -> SpecInvalid:
    """tomllib puts the position in its message: '... (at line 3, column 7)'."""
    message = str(error)
    match = _AT_LINE.search(message)
    if match is None:
        return parse_error(file, "TOML", message, None)
    return parse_error(file, "TOML", message[: match.start()].strip(), int(match[1]), int(match[2]))


def yaml_error(file: str, error: Exception) -> SpecInvalid:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return parse_error(file, "YAML", problem, None)
    return parse_error(file, "YAML", problem, mark.line + 1, mark.column + 1)
