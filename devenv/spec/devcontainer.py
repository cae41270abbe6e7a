"""Import a project's .devcontainer/devcontainer.json as devenv.yaml data.

Teams arrive with a devcontainer already written; the import carries over what has a devenv
equivalent (ports, env, creation commands, host requirements) and says, one warning each, what
it did not carry and why, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from devenv.errors import SpecInvalid, SpecIssue
from devenv.spec.loader import issues_from_validation_error
from devenv.spec.models import Spec, slugify
from devenv.spec.units import parse_size

_CANDIDATES = (".devcontainer/devcontainer.json", ".devcontainer.json", "devcontainer.json")
_CREATE_COMMANDS = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _JsoncError(ValueError):
    """A JSONC problem found before json.loads sees the text (an unterminated comment)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def import_devcontainer(path: Path, name: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """(spec data ready to dump as devenv.yaml, warnings) from a devcontainer.json or a project folder."""
    file_path = _find(path)
    file = str(file_path)
    config = _read_jsonc(file_path)
    folder = file_path.resolve().parent
    project = folder.parent if folder.name == ".devcontainer" else folder
    source_name = (
        name or (config.get("name") if isinstance(config.get("name"), str) else None) or project.name
    )
    importer = _Importer(folder, project)
    importer.run(config)
    data: dict[str, Any] = {"name": slugify(str(source_name)) or "workspace"}
    data.update(importer.result())
    try:
        Spec.model_validate(data)
    except ValidationError as exc:  # the importer sanitises every value, so this is a bug guard
        raise SpecInvalid(issues_from_validation_error(exc, file)) from None
    return data, importer.warnings


def strip_jsonc(text: str) -> str:
    """JSON from JSONC: comments and trailing commas become spaces, so error positions still match."""
    chars = list(text)

    def blank(start: int, end: int) -> None:
        for index in range(start, end):
            if chars[index] not in "\r\n":
                chars[index] = " "

    index, length, in_string = 0, len(text), False
    while index < length:
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif text.startswith("//", index):
            end = text.find("\n", index)
            end = length if end == -1 else end
            blank(index, end)
            index = end
            continue
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            if end == -1:
                raise _JsoncError("unterminated /* comment", index)
            blank(index, end + 2)
            index = end + 2
            continue
        index += 1
    _blank_trailing_commas(chars)
    return "".join(chars)


def _blank_trailing_commas(chars: list[str]) -> None:
    """A comma whose next non-space character closes an array or object is dropped (JSONC allows it)."""
    in_string, escaped = False, False
    for index, char in enumerate(chars):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == ",":
            ahead = index + 1
            while ahead < len(chars) and chars[ahead].isspace():
                ahead += 1
            if ahead < len(chars) and chars[ahead] in "]}":
                chars[index] = " "


def _find(path: Path) -> Path:
    """The devcontainer.json itself, or the one a project folder holds."""
    if path.is_dir():
        for candidate in _CANDIDATES:
            if (path / candidate).is_file():
                return path / candidate
        path = path / _CANDIDATES[0]
    if not path.is_file():
        message = f"no devcontainer.json at {path}"
        raise SpecInvalid(
            [SpecIssue(str(path), None, None, "", message, "pass the path to devcontainer.json")]
        )
    return path


def _read_jsonc(path: Path) -> dict[str, Any]:
    """Parsed devcontainer.json; any syntax problem becomes a located SpecInvalid."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecInvalid([SpecIssue(file, None, None, "", f"cannot read {file}: {exc}")]) from None
    try:
        config = json.loads(strip_jsonc(text))
    except _JsoncError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecInvalid([SpecIssue(file, line, column, "", f"invalid JSON: {exc}")]) from None
    except json.JSONDecodeError as exc:
        raise SpecInvalid([SpecIssue(file, exc.lineno, exc.colno, "", f"invalid JSON: {exc.msg}")]) from None
    if not isinstance(config, dict):
        raise SpecInvalid([SpecIssue(file, 1, 1, "", "expected a JSON object at top level")])
    return config


class _Importer:
    """Maps devcontainer keys to spec fields, collecting warnings for what does not map."""

    def __init__(self, folder: Path, project: Path | None = None) -> None:
        self.folder = folder
        self.project = project or folder  # files it names must stay inside (a Dockerfile is read)
        self.warnings: list[str] = []
        self.setup: list[str] = []
        self.dockerfile_setup: list[str] = []
        self.ports: list[int] = []
        self.env: dict[str, str] = {}
        self.resources: dict[str, Any] = {}

    def run(self, config: dict[str, Any]) -> None:
        for key, value in config.items():
            if key == "name":
                continue
            if key == "image":
                self.warn(
                    f"image {value!r} is not used: devenv builds from its pinned base; "
                    "put extra apt packages under apt:"
                )
            elif key == "build":
                self.build(value)
            elif key == "dockerFile":  # the old spelling of build.dockerfile
                self.dockerfile(value)
            elif key == "forwardPorts":
                self.forward_ports(value)
            elif key in ("containerEnv", "remoteEnv"):
                self.environment(key, value)
            elif key in _CREATE_COMMANDS:
                continue  # handled below, in the order devcontainers runs them
            elif key == "hostRequirements":
                self.host_requirements(value)
            elif key == "features":
                self.features(value)
            else:
                self.warn(f"'{key}' not imported: devenv has no equivalent setting")
        for key in _CREATE_COMMANDS:
            if key in config:
                self.commands(key, config[key])

    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.dockerfile_setup or self.setup:
            data["setup"] = self.dockerfile_setup + self.setup
        if self.resources:
            data["resources"] = self.resources
        if self.ports:
            data["ports"] = self.ports
        if self.env:
            data["env"] = self.env
        return data

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def build(self, value: object) -> None:
        if not isinstance(value, dict):
            self.warn("'build' not imported: expected an object with a dockerfile")
            return
        for key, item in value.items():
            if key == "dockerfile":
                self.dockerfile(item)
            else:
                self.warn(f"build.{key} not imported: devenv builds from its pinned base")

    def dockerfile(self, value: object) -> None:
        if not isinstance(value, str):
            self.warn("build.dockerfile not imported: expected a path")
            return
        try:
            target = (self.folder / value).resolve()
            if not target.is_relative_to(self.project.resolve()):
                self.warn(f"Dockerfile '{value}' not imported: it is outside the project folder")
                return
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError):
            self.warn(f"Dockerfile '{value}' not found or unreadable: none of its steps were imported")
            return
        steps, skipped = dockerfile_run_steps(text)
        self.dockerfile_setup.extend(steps)
        message = (
            f"Dockerfile '{value}' is not used: devenv builds from its pinned base; "
            f"its {len(steps)} RUN step(s) were copied into setup: - review them "
            "(FROM, COPY, ENV and the other instructions were not imported)"
        )
        if skipped:
            message += f"; {skipped} heredoc RUN step(s) were skipped"
        self.warn(message)

    def forward_ports(self, value: object) -> None:
        if not isinstance(value, list):
            self.warn("forwardPorts not imported: expected a list")
            return
        for item in value:
            port = _port(item)
            if port is None:
                self.warn(f"forwarded port {item!r} not imported: expected a port number or 'host:port'")
            elif port not in self.ports:
                self.ports.append(port)

    def environment(self, key: str, value: object) -> None:
        if not isinstance(value, dict):
            self.warn(f"{key} not imported: expected an object")
            return
        for name, item in value.items():
            if not _ENV_KEY_RE.fullmatch(name):
                self.warn(f"{key}.{name} not imported: not an environment variable name")
            elif item is None:
                self.warn(f"{key}.{name} not imported: it unsets the variable, which devenv does not do")
            elif not isinstance(item, str | int | float | bool):
                self.warn(f"{key}.{name} not imported: expected a string value")
            elif "${" in str(item):
                self.warn(
                    f"{key}.{name} not imported: its value {item!r} refers to a variable that "
                    "devenv does not expand; set it in env: by hand, or as a secret"
                )
            else:
                self.env[name] = str(item).lower() if isinstance(item, bool) else str(item)

    def commands(self, key: str, value: object) -> None:
        """String: a shell line; list: one command, no shell; object: named commands (run in parallel)."""
        found: list[str] = []
        if isinstance(value, dict):
            for item in value.values():
                found.extend(_command(item))
        else:
            found.extend(_command(value))
        if not found:
            self.warn(f"{key} not imported: expected a string, a list or an object of commands")
            return
        self.setup.extend(found)
        self.warn(
            f"{key} copied into setup: devenv runs setup at image build time, not after the "
            "container is created; review it (no home volume or project checkout exists then)"
        )

    def host_requirements(self, value: object) -> None:
        if not isinstance(value, dict):
            self.warn("hostRequirements not imported: expected an object")
            return
        for key, item in value.items():
            if key == "gpu":
                self.gpu(item)
            elif key == "cpus" and isinstance(item, int | float) and not isinstance(item, bool) and item > 0:
                self.resources["cpu"] = item
            elif key in ("memory", "storage") and _valid_size(item):
                self.resources["memory" if key == "memory" else "disk"] = item
            else:
                self.warn(f"hostRequirements.{key} ({item!r}) not imported")

    def gpu(self, value: object) -> None:
        if value is True:
            self.resources["gpu"] = 1
        elif value == "optional":
            self.warn('hostRequirements.gpu "optional" not imported: a devenv spec asks for a GPU or not')
        elif isinstance(value, dict):
            self.resources["gpu"] = 1
            detail = ", ".join(f"{k}={v}" for k, v in value.items())
            self.warn(
                f"hostRequirements.gpu ({detail}) imported as one GPU of any type; "
                'name a type with enough memory, like gpu: "A100:1"'
            )
        elif value is not False:
            self.warn(f'hostRequirements.gpu ({value!r}) not imported: expected true, false or "optional"')

    def features(self, value: object) -> None:
        items = value.keys() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for feature in items:
            self.warn(
                f"feature '{feature}' not imported: devenv has no devcontainer features; "
                "add what it installs under apt: or setup:"
            )


def dockerfile_run_steps(text: str) -> tuple[list[str], int]:
    """(the Dockerfile's RUN commands as shell lines, how many heredoc RUNs were skipped)."""
    steps: list[str] = []
    skipped = 0
    for instruction in _instructions(text):
        keyword, _, body = instruction.partition(" ")
        if keyword.upper() != "RUN":
            continue
        body = body.strip()
        while body.startswith("--"):  # RUN --mount=... --network=... flags
            _, _, body = body.partition(" ")
            body = body.strip()
        if "<<" in body:
            skipped += 1
            continue
        if body.startswith("["):
            try:
                argv = json.loads(body)
            except json.JSONDecodeError:
                argv = None
            if isinstance(argv, list) and all(isinstance(arg, str) for arg in argv):
                body = shlex.join(argv)
        if body:
            steps.append(body)
    return steps, skipped


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with backslash continuations joined and comment lines dropped."""
    instructions: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        instructions.append((current + line).strip())
        current = ""
    if current.strip():
        instructions.append(current.strip())
    return instructions


def _command(value: object) -> list[str]:
    """One shell line from a devcontainer command in string or exec-array form; [] when neither."""
    if isinstance(value, str) and value.strip():
        return [value.strip()]
    if isinstance(value, list) and value and all(isinstance(arg, str) for arg in value):
        return [shlex.join(value)]
    return []


def _port(value: object) -> int | None:
    """A forwardPorts entry: 8888, "8888" or "host:8888"."""
    if isinstance(value, bool):
        return None
    text = value.rpartition(":")[2] if isinstance(value, str) else value
    if isinstance(text, str) and text.isdigit():
        text = int(text)
    return text if isinstance(text, int) and 1 <= text <= 65535 else None


def _valid_size(value: object) -> bool:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return False
    try:
        parse_size(value)
    except ValueError:
        return False
    return True
