"""The daemon's backends by name, from its config file; `local` is the Docker engine by default.

daemon.yaml (in DEVENV_HOME) may name more:

    backends:
      gpu-box: {type: docker, url: "ssh://me@gpu-box"}

A backend type that cannot load (its SDK missing) is listed with the reason, never dropped.
SSH hosts added at run time (`devenv host add`, kept in the store) join with `add` and leave with `remove`.

daemon.yaml also lists the folders of an engine's host that a spec may mount (a DVC directory remote,
`data: {remote: /srv/dvc}`), and their subfolders; none when absent. The engine's socket and the daemon's
own folder are never mountable, listed or not:

    allowed_host_folders: [/srv/dvc, /data/shared]
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from devenv.backends import backend_types
from devenv.backends.base import Backend, BackendFactory
from devenv.confinement import HostFolders
from devenv.errors import DevenvError, UsageError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    type: str
    url: str | None
    backend: Backend | None
    error: str | None = None


class Backends:
    def __init__(self, entries: dict[str, BackendEntry]) -> None:
        self.entries = entries
        self._lock = threading.Lock()

    def add(self, entry: BackendEntry) -> None:
        with self._lock:
            self.entries = {**self.entries, entry.name: entry}  # readers iterate the old dict undisturbed

    def remove(self, name: str) -> BackendEntry | None:
        with self._lock:
            entries = dict(self.entries)
            entry = entries.pop(name, None)
            self.entries = entries
        return entry

    def get(self, name: str) -> Backend:
        entry = self.entries.get(name)
        if entry is None:
            raise UsageError(
                f"no backend named {name!r} (known: {', '.join(sorted(self.entries))})",
                hint="set `backend:` in devenv.yaml (or `--on`) to one of those, or add the machine "
                "with `devenv host add NAME ssh://USER@HOST`",
            )
        if entry.backend is None:
            raise DevenvError(f"backend {name!r} ({entry.type}) cannot be used: {entry.error}")
        return entry.backend

    def usable(self) -> list[Backend]:
        return [entry.backend for entry in self.entries.values() if entry.backend is not None]


def load_config(config_path: Path) -> dict[str, Any]:
    """daemon.yaml's mapping (the admin's file); empty when there is none."""
    if not config_path.exists():
        return {}
    loaded = yaml.safe_load(config_path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{config_path}: expected a mapping at the top level")
    return loaded


def load_host_folders(config_path: Path, home: Path) -> HostFolders:
    """`allowed_host_folders` from daemon.yaml: absolute paths; `home` (the daemon's) is never allowed."""
    listed = load_config(config_path).get("allowed_host_folders") or []
    if not isinstance(listed, list) or not all(isinstance(item, str) and item.startswith("/") for item in listed):
        raise UsageError(f"{config_path}: allowed_host_folders: expected a list of absolute paths")
    if any(".." in item.split("/") for item in listed):
        raise UsageError(f"{config_path}: allowed_host_folders: write each folder without '..'")
    engine = os.environ.get("DEVENV_ENGINE") or os.environ.get("DOCKER_HOST") or ""
    guarded = [engine.removeprefix("unix://")] if engine.startswith("unix://") else []
    guarded += [path for path in [os.environ.get("DEVENV_SECRETS_KEY_FILE")] if path]  # secrets.KEY_FILE_ENV
    return HostFolders.make(listed, home, guarded)


def load_backends(config_path: Path) -> Backends:
    config = load_config(config_path)
    declared: dict[str, dict[str, Any]] = {"local": {"type": "docker", "url": os.environ.get("DEVENV_ENGINE")}}
    for name, body in (config.get("backends") or {}).items():
        if not isinstance(body, dict) or "type" not in body:
            raise UsageError(f"{config_path}: backends.{name}: expected a mapping with `type:`")
        declared[str(name)] = body
    types = backend_types()
    entries: dict[str, BackendEntry] = {}
    for name, body in declared.items():
        kind = str(body["type"])
        options = {key: value for key, value in body.items() if key != "type"}
        url = options.get("url") if isinstance(options.get("url"), str) else None
        found = types.get(kind)
        if found is None:
            entries[name] = BackendEntry(name, kind, url, None, f"no backend type {kind!r} installed")
        elif found.factory is None:
            entries[name] = BackendEntry(name, kind, url, None, found.error)
        else:
            try:
                entries[name] = BackendEntry(name, kind, url, _make(found.factory, name, options))
            except ValidationError as error:  # a key the type does not take, or a value of the wrong kind
                entries[name] = BackendEntry(
                    name, kind, url, None, _options_error(config_path, name, kind, found.factory, error)
                )
            except DevenvError as error:  # an unreadable identity, a bad value: listed with the reason, daemon starts
                entries[name] = BackendEntry(name, kind, url, None, f"{config_path}: backends.{name}: {error.render()}")
            except TypeError as error:  # an older plugin's factory refusing an option
                entries[name] = BackendEntry(name, kind, url, None, f"{config_path}: backends.{name}: {error}")
    return Backends(entries)


def _make(factory: Any, name: str, options: dict[str, Any]) -> Backend:
    if isinstance(factory, BackendFactory):
        return factory.create(name, factory.config.model_validate(options))
    backend: Backend = factory(name, **options)
    return backend


def _options_error(config_path: Path, name: str, kind: str, factory: BackendFactory, error: ValidationError) -> str:
    """Each wrong option as `FILE: backends.NAME.KEY: what is wrong`, with the options the type takes."""
    known = ", ".join(factory.config.model_fields)
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in (name, *problem["loc"]))
        if problem["type"] == "extra_forbidden":
            lines.append(f"{config_path}: backends.{where}: not an option of a {kind} backend (its options: {known})")
        elif problem["type"] == "missing":
            lines.append(f"{config_path}: backends.{where}: required by a {kind} backend")
        else:
            lines.append(f"{config_path}: backends.{where}: {problem['msg']}")
    return "; ".join(lines)
