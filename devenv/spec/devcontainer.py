"""Import a project's .devcontainer/devcontainer.json as devenv.yaml data.

Teams arrive with a devcontainer already written; the import keeps what it means, not only what it
says: runArgs' GPUs, /dev/shm and ulimits become resources, a CUDA image becomes the cuda base, the
lifecycle commands run where they ran (the running workspace, with the network: hooks), and each key
devenv does not carry is named in one warning with the reason, so nothing is dropped silently.
The mapping, key by key, is in docs/devcontainer.md.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from devenv.errors import SpecInvalid, SpecIssue
from devenv.spec import devcontainer_commands as commands
from devenv.spec import devcontainer_features as build
from devenv.spec import devcontainer_runargs as run
from devenv.spec.devcontainer_features import base_python
from devenv.spec.devcontainer_runargs import Draft
from devenv.spec.docker_run_flags import HOST_PATHS, MANAGED, REFUSED
from devenv.spec.loader import issues_from_validation_error
from devenv.spec.models import Spec, slugify

_CANDIDATES = (".devcontainer/devcontainer.json", ".devcontainer.json", "devcontainer.json")
_CREATE_COMMANDS = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
_PIP_USER_RE = re.compile(r"(\bpip3?\s+install\b[^;&|\n]*?)\s--user\b")
_START_COMMANDS = ("postStartCommand", "postAttachCommand")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOOK_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,62}")
_HOST_VARIABLE_RE = re.compile(r"\$\{(?:localEnv:[^}]*|localWorkspaceFolder|devcontainerId)\}")
_REFUSED_KEYS = ("privileged", "capAdd", "securityOpt")
_NOT_IMPORTED = {
    "initializeCommand": "it runs on the developer's host before the container exists; devenv runs nothing there",
    "waitFor": "devenv runs hooks.create, then hooks.start, and `devenv up` streams both",
    **dict.fromkeys(("remoteUser", "containerUser", "updateRemoteUserUID"), "workspaces run as the user dev"),
    **dict.fromkeys(
        ("customizations", "settings", "extensions"),
        "editor settings stay with the editor (VS Code Remote-SSH reads its own)",
    ),
    **dict.fromkeys(
        ("dockerComposeFile", "service", "runServices"),
        "devenv runs one container per workspace; run the other services elsewhere",
    ),
    "shutdownAction": "workspaces stop with `devenv stop` or autostop:",
    "overrideCommand": "the base image's entrypoint starts sshd and JupyterLab",
    "userEnvProbe": "env: is set on the container itself",
    "otherPortsAttributes": "devenv publishes only the listed ports, with no auto-forward settings",
    "overrideFeatureInstallOrder": "devenv does not run Dev Container Features",
    "context": "devenv builds from its own context (the project's files)",
    "workspaceFolder": "devenv puts the project in the workspace home, where hooks and shells start",
    "init": MANAGED["init"],
    "privileged": REFUSED["privileged"],
    "capAdd": REFUSED["cap-add"],
    "securityOpt": REFUSED["security-opt"],
}


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
    source_name = name or (config.get("name") if isinstance(config.get("name"), str) else None) or project.name
    importer = _Importer(folder, project)
    importer.run(config)
    data: dict[str, Any] = {"name": slugify(str(source_name)) or "workspace"}
    data.update(importer.result())
    commands.adapt(data, importer.draft.warnings)  # vscode -> dev, bookworm's apt names
    try:
        Spec.model_validate(data)
    except ValidationError as exc:  # the importer sanitises every value, so this is a bug guard
        raise SpecInvalid(issues_from_validation_error(exc, file)) from None
    return data, importer.draft.warnings


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
        raise SpecInvalid([SpecIssue(str(path), None, None, "", message, "pass the path to devcontainer.json")])
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


def mounts(key: str, value: object, draft: Draft) -> None:
    """A mount of the project folder is what devenv does anyway; any other mount is refused with the reason."""
    if key == "mounts" and not isinstance(value, list):
        draft.warn("mounts not imported: expected a list")
    for item in value if key == "mounts" and isinstance(value, list) else [] if key == "mounts" else [value]:
        _mount(key, item, draft)


def _mount(key: str, value: object, draft: Draft) -> None:
    if isinstance(value, dict):
        parts = {str(k).lower(): str(v) for k, v in value.items()}
    elif isinstance(value, str):
        parts = dict(part.partition("=")[::2] for part in value.split(",") if part.strip())
        parts = {k.strip().lower(): v.strip() for k, v in parts.items()}
    else:
        draft.warn(f"{key} {value!r} not imported: expected a mount string or object")
        return
    source = parts.get("source", parts.get("src", ""))
    target = parts.get("target", parts.get("destination", parts.get("dst", "")))
    kind = parts.get("type", "bind" if source.startswith(("/", "$")) else "volume")
    shown = f"{key} {value!r}" if isinstance(value, str) else f"{key} ({source} -> {target})"
    if source.rstrip("/") == "${localWorkspaceFolder}":
        draft.warn(
            f"{shown}: the project folder is handled: devenv puts the project's code in the workspace home "
            "(hooks and shells start there)"
        )
    elif kind == "volume":
        draft.warn(
            f"{shown} refused: a workspace has one home volume that outlives its container; keep caches "
            "and state under the home"
        )
    elif kind == "tmpfs":
        draft.warn(f"{shown} not imported: devenv has no tmpfs mounts; /dev/shm is sized by resources.shm")
    else:
        draft.warn(f"{shown} refused: {HOST_PATHS}")


_HANDLERS: dict[str, Callable[[object, Draft], None]] = {
    "image": lambda value, draft: build.image(value, "image", draft),
    "runArgs": run.run_args,
    "hostRequirements": run.host_requirements,
    "features": build.features,
    "mounts": lambda value, draft: mounts("mounts", value, draft),
    "workspaceMount": lambda value, draft: mounts("workspaceMount", value, draft),
    "forwardPorts": lambda value, draft: run.forward_ports("forwardPorts", value, draft),
    "appPort": lambda value, draft: run.forward_ports("appPort", value, draft),
}


class _Importer:
    """Maps devcontainer keys onto a Draft of the spec; every key not carried is warned with the reason."""

    def __init__(self, folder: Path, project: Path | None = None) -> None:
        self.folder = folder
        self.project = project or folder  # files it names must stay inside (a Dockerfile is read)
        self.draft = Draft()

    def warn(self, message: str) -> None:
        self.draft.warn(message)

    def run(self, config: dict[str, Any]) -> None:
        draft = self.draft
        for key, value in config.items():
            if key in ("name", "$schema", "portsAttributes") or key in _CREATE_COMMANDS + _START_COMMANDS:
                continue  # ports' labels once the ports are known; the commands in the order Dev Containers runs them
            if key in _HANDLERS:
                _HANDLERS[key](value, draft)
            elif key == "build":
                self.build(value)
            elif key == "dockerFile":  # the old spelling of build.dockerfile
                self.dockerfile(value, {})
            elif key in ("containerEnv", "remoteEnv"):
                self.environment(key, value)
            elif key in _REFUSED_KEYS and not value:
                continue  # privileged: false asks for nothing
            elif key in _NOT_IMPORTED:
                self.warn(f"'{key}' {'refused' if key in _REFUSED_KEYS else 'not imported'}: {_NOT_IMPORTED[key]}")
            else:
                self.warn(f"'{key}' not imported: devenv has no equivalent setting")
        if "portsAttributes" in config:
            run.ports_attributes(config["portsAttributes"], draft)
        for key in _CREATE_COMMANDS + _START_COMMANDS:
            if key in config:
                self.commands(key, config[key])
        run.ipc_host_shm(draft)

    def result(self) -> dict[str, Any]:
        draft, base = self.draft, self.draft.base or "cpu"
        hooks = {key: steps for key, steps in (("create", draft.create), ("start", draft.start)) if steps}
        fields = {
            "base": None if base == "cpu" else base,
            "python": self.python(base),
            "apt": draft.apt,
            "setup": draft.setup,
            "hooks": hooks,
            "resources": draft.resources,
            "ports": draft.ports,
            "env": draft.env,
        }
        return {key: value for key, value in fields.items() if value}

    def python(self, base: str) -> str | None:
        """The Python version asked for, if the base provides it; else the base's, with a warning why."""
        have = base_python(base)
        if not self.draft.python:
            return have if base != "cpu" else None
        asked, origin = self.draft.python[0]
        for other, other_origin in self.draft.python[1:]:
            if other != asked:
                self.warn(f"{other_origin}: Python {other} not imported: {origin} asks for Python {asked}")
        if asked != have:
            self.warn(
                f"{origin}: Python {asked} cannot be met: the {base} base provides Python {have} only "
                f'(the lock refuses any other), so python: "{have}" is used'
            )
        return have

    def build(self, value: object) -> None:
        if not isinstance(value, dict):
            self.warn("'build' not imported: expected an object with a dockerfile")
            return
        args = found_args if isinstance(found_args := value.get("args"), dict) else {}
        for key, item in value.items():
            if key == "dockerfile":
                self.dockerfile(item, {str(k): str(v) for k, v in args.items()})
            elif key == "args":
                self.warn("build.args not imported: only used to read the Dockerfile's FROM and RUN lines")
            else:
                self.warn(f"build.{key} not imported: devenv builds from its pinned base")

    def dockerfile(self, value: object, args: dict[str, str]) -> None:
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
        before = commands.marks(self.draft)
        build.dockerfile(text, f"Dockerfile '{value}'", args, self.draft)
        commands.drop_copied(text, f"Dockerfile '{value}'", self.draft, before)  # COPY/ADD's paths are not there

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
                self.draft.env[name] = str(item).lower() if isinstance(item, bool) else str(item)

    def commands(self, key: str, value: object) -> None:
        """String: a shell line; list: one command, no shell; object: named commands run in parallel."""
        if isinstance(value, dict):
            step: str | dict[str, str] | None = self.group(key, value)
        else:
            step = self.line(key, value)
        if not step:
            if not isinstance(value, dict | str | list) or not value:  # else each part was warned
                self.warn(f"{key} not imported: expected a string, a list or an object of commands")
            return
        if key == "postAttachCommand":  # Dev Containers never wait for it (a server, often): detached steps
            self.draft.start.extend(
                {"background": line} for line in (step.values() if isinstance(step, dict) else [step])
            )
            self.warn(
                "postAttachCommand -> hooks.start `background` steps: started detached at every start "
                "(Dev Containers never wait for it); output in ~/.devenv/hooks/start-<n>.log"
            )
            return
        (self.draft.start if key in _START_COMMANDS else self.draft.create).append(step)
        if key == "updateContentCommand":
            self.warn(
                "updateContentCommand -> hooks.create: devenv has no content-update event (prebuilds); "
                "it runs once per home, after onCreateCommand"
            )

    def group(self, key: str, value: dict[str, Any]) -> dict[str, str]:
        group: dict[str, str] = {}
        for name, item in value.items():
            line = self.line(f"{key}.{name}", item)
            if line is None:
                continue
            safe = re.sub(r"[^A-Za-z0-9._-]", "-", str(name)).lstrip(".-")[:60] or "command"
            while safe in group or safe == "background":  # a lone `background` key means a detached step
                safe += "-2"
            if safe != name or not _HOOK_NAME_RE.fullmatch(safe):
                self.warn(f"{key}.{name}: renamed {safe!r} (a hook name has letters, digits, '.', '_' and '-')")
            group[safe] = line
        return group

    def line(self, key: str, value: object) -> str | None:
        line = _command(value)
        if line is None:
            if key.count(".") or isinstance(value, str | list):
                self.warn(f"{key} not imported: expected a non-empty string or list of strings")
            return None
        if host := _HOST_VARIABLE_RE.search(line):
            self.warn(
                f"{key} {line!r} not imported: it refers to the developer's host ({host.group(0)}), "
                "which a workspace cannot see"
            )
            return None
        replaced = line.replace("/workspaces/${localWorkspaceFolderBasename}", "$PWD")
        for name in ("containerWorkspaceFolderBasename", "localWorkspaceFolderBasename"):
            replaced = replaced.replace(f"${{{name}}}", '$(basename "$PWD")')
        replaced = replaced.replace("${containerWorkspaceFolder}", "$PWD")
        replaced = re.sub(r"\$\{containerEnv:([A-Za-z_][A-Za-z0-9_]*)\}", r"${\1}", replaced)
        if replaced != line:
            self.warn(
                f"{key}: the workspace folder became $PWD and ${{containerEnv:X}} $X (hooks start in the "
                "project's folder, with the container's environment)"
            )
        if (unused := _PIP_USER_RE.sub(r"\1", replaced)) != replaced:
            replaced = _PIP_USER_RE.sub(r"\1", unused)  # a second --user in the same command
            self.warn(f"{key}: pip's --user dropped: the workspace's venv is dev's, and pip refuses --user in a venv")
        return replaced


def _command(value: object) -> str | None:
    """One shell line from a devcontainer command in string or exec-array form; None when neither."""
    if isinstance(value, list) and value and all(isinstance(arg, str) for arg in value):
        return shlex.join(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


__all__ = ["import_devcontainer", "strip_jsonc"]
