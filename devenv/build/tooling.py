"""devenv's own tooling inside every dev image: what gets resolved for it, and the files it ships."""

from __future__ import annotations

from pathlib import Path

from devenv.resources import images_dir
from devenv.spec.models import Spec

# The JupyterLab server lives in its own venv (/opt/devenv/venv) so it never constrains the
# project's packages; the project's venv only gets the kernel.
TOOLING_REQUIREMENTS = ["jupyterlab>=4.2,<5"]
# ipykernel's bound is low: a project that pins its own ipykernel (6.15...) keeps it. IPython 8.23.0 imports
# typing_extensions.TypeAliasType (4.6+) but declares no bound, so beside a project capping typing_extensions
# (tensorflow 2.13: <4.6) the kernel would not start; 8.24 declares it.
KERNEL_REQUIREMENTS = ["ipykernel>=6", "ipython!=8.23.0"]

# What the spec's repo/data/tracking need inside the workspace, added to the lock like the kernel:
# git for the clone (Debian's), DVC (with the plugin its remote's scheme needs) and wandb in the
# project's venv, where the person's own code imports them.
GIT_APT = "git"
DVC_REQUIREMENT = "dvc>=3.50"
WANDB_REQUIREMENT = "wandb>=0.17"
_DVC_PLUGINS = {
    "s3": "dvc-s3",
    "gs": "dvc-gs",
    "gcs": "dvc-gs",
    "azure": "dvc-azure",
    "ssh": "dvc-ssh",
    "hdfs": "dvc-hdfs",
    "webdav": "dvc-webdav",
    "webdavs": "dvc-webdav",
    "oss": "dvc-oss",
}


def versioning_apt(spec: Spec) -> list[str]:
    return [GIT_APT] if spec.repo is not None else []


def versioning_python(spec: Spec) -> list[str]:
    """DVC and its remote's plugin when `data:` is set; wandb when `tracking: wandb` is."""
    extra: list[str] = []
    if spec.data is not None:
        extra.append(DVC_REQUIREMENT)
        scheme = spec.data.remote.split("://", 1)[0] if "://" in spec.data.remote else ""
        plugin = _DVC_PLUGINS.get(scheme) or ("dvc-s3" if spec.data.endpoint else None)
        if plugin:
            extra.append(plugin)
    if spec.tracking is not None and spec.tracking.wandb is not None:
        extra.append(WANDB_REQUIREMENT)
    return extra


def tooling_files() -> dict[str, Path]:
    """Name in the build context's tooling/ folder -> shipped file (each one is part of the image hash)."""
    workspace = images_dir() / "workspace"
    shipped = (
        "entrypoint.sh",
        "sshd_config",
        "idle-probe",
        "end-sessions",
        "ssh-principals",
        "jupyter_server_config.py",
        "python-kernel",
        "kernel.json",
        "git-credential-devenv",
        "workspace-env.sh",
        "devenv_wandb.py",
        "devenv_wandb.pth",
        "jupyterlab-overrides.json",
    )
    return {name: workspace / name for name in shipped}


def dockerfile_template() -> Path:
    return images_dir() / "workspace" / "Dockerfile.j2"
