"""What a workspace's clone and data are right now, read from inside it, in plain data.

The data hash is computed from the DVC files that pin the data (each out's md5 by path), so two
workspaces at the same commit with the same data report the same hash without reading the data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class RepoFacts:
    commit: str | None
    branch: str | None  # "(detached)" when HEAD is a commit
    dirty: bool
    changes: int = 0
    diff_hash: str | None = None  # sha256 of `git diff HEAD` plus untracked files, when dirty
    upstream: str | None = None
    ab: str | None = None  # "+1 -0": commits ahead and behind upstream
    remote: str | None = None


@dataclass(frozen=True)
class Facts:
    repo: RepoFacts | None
    data_files: dict[str, str] = field(default_factory=dict)  # DVC out path -> md5
    data_hash: str | None = None
    wandb_runs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _list(value: Any) -> list[Any]:
    """A YAML value that should be a list; anything else (a hand-edited file) counts as empty."""
    return list(value) if isinstance(value, list) else []


def data_outs(dvc_files: dict[str, str]) -> dict[str, str]:
    """Each DVC-tracked output (path relative to the repo) and its md5, from .dvc files and dvc.lock."""
    outs: dict[str, str] = {}
    for name, text in sorted(dvc_files.items()):
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            continue
        if not isinstance(loaded, dict):
            continue
        folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        entries: list[Any] = _list(loaded.get("outs"))
        stages = loaded.get("stages") if name.endswith("dvc.lock") else None
        if isinstance(stages, dict):
            for stage in stages.values():
                entries += _list(stage.get("outs")) if isinstance(stage, dict) else []
        for out in entries:
            if isinstance(out, dict) and out.get("path"):
                digest = out.get("md5") or out.get("hash") or out.get("etag") or ""
                outs[folder + str(out["path"]).rstrip("/")] = str(digest)
    return outs


def data_hash(outs: dict[str, str]) -> str | None:
    if not outs:
        return None
    digest = hashlib.sha256(b"devenv-data-v1\0")
    for path, md5 in sorted(outs.items()):
        digest.update(f"{path}\0{md5}\n".encode())
    return digest.hexdigest()


def parse_facts(output: str) -> Facts:
    """The facts script's JSON (see scripts.FACTS_PY)."""
    raw = json.loads(output)
    repo = raw.get("repo")
    outs = data_outs(raw.get("dvc_files") or {})
    return Facts(
        repo=RepoFacts(**{key: repo.get(key) for key in RepoFacts.__dataclass_fields__}) if repo else None,
        data_files=outs,
        data_hash=data_hash(outs),
        wandb_runs=list(raw.get("wandb_runs") or []),
    )
