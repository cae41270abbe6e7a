"""devenv's own tooling inside every dev image: what gets resolved for it, and the files it ships."""

from __future__ import annotations

from pathlib import Path

from devenv.resources import images_dir

# The JupyterLab server lives in its own venv (/opt/devenv/venv) so it never constrains the
# project's packages; the project's venv only gets the kernel.
TOOLING_REQUIREMENTS = ["jupyterlab>=4.2,<5"]
KERNEL_REQUIREMENTS = ["ipykernel>=6.29"]


def tooling_files() -> dict[str, Path]:
    """Name in the build context's tooling/ folder -> shipped file (each one is part of the image hash)."""
    workspace = images_dir() / "workspace"
    shipped = ("entrypoint.sh", "sshd_config", "idle-probe", "end-sessions", "ssh-principals",
               "jupyter_server_config.py")
    return {name: workspace / name for name in shipped}


def dockerfile_template() -> Path:
    return images_dir() / "workspace" / "Dockerfile.j2"
