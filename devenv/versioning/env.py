"""The two files a workspace's shells and kernels source (images/workspace/workspace-env.sh reads them).

`workspace.env` holds pins and settings (no secret), placed on the container's disk at each start;
the secrets' env file lives on the secrets tmpfs beside one file per secret.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from devenv.spec.models import Spec

WORKSPACE_ENV_PATH = "/etc/devenv/workspace.env"
SECRETS_ENV_NAME = "env"  # /run/devenv/secrets/env


def exports(values: Mapping[str, str | None]) -> bytes:
    lines = [f"export {key}={shlex.quote(value)}\n" for key, value in sorted(values.items()) if value is not None]
    return "".join(lines).encode()


def secret_files(values: Mapping[str, str]) -> dict[str, bytes]:
    """One file per secret (for tools that read a file, like git's credential helper) and the env file."""
    files = {name: value.encode() for name, value in values.items()}
    files[SECRETS_ENV_NAME] = exports(values)
    return files


def workspace_env(
    spec: Spec | None, *, image_hash: str | None, lock_hash: str | None, base_digest: str | None, data_hash: str | None
) -> bytes:
    values: dict[str, str | None] = {
        "DEVENV_IMAGE_HASH": image_hash,
        "DEVENV_LOCK_HASH": lock_hash,
        "DEVENV_BASE_DIGEST": base_digest,
        "DEVENV_DATA_HASH": data_hash,
    }
    if spec is not None and spec.repo is not None:
        from devenv.versioning.scripts import repo_dir

        values["DEVENV_REPO_DIR"] = repo_dir(spec.repo)
    wandb = spec.tracking.wandb if spec is not None and spec.tracking is not None else None
    if wandb is not None:
        values["WANDB_PROJECT"] = wandb.project
        values["WANDB_ENTITY"] = wandb.entity
    return exports(values)
