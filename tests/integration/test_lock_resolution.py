"""The lock against the real index (PyPI, through uv): what devenv adds to a project's Python set never
overrules the project's own pins."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import docker
import pytest

from devenv.build.project import checked_lock, lock_project, open_project
from devenv.build.tooling import KERNEL_REQUIREMENTS
from devenv.errors import LockMismatch
from devenv.lock.python import resolve_python
from devenv.testing.projects import copy_template


def test_a_project_pinning_an_older_ipykernel_keeps_its_pin(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("ipykernel==6.15.1\n")  # a real repository's pin (the corpus's spam classifier)
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    locked = resolve_python(
        [requirements],
        list(KERNEL_REQUIREMENTS),
        python="3.11",
        arch="x86_64",
        glibc="2.36",
        exclude_newer=today,
        root=tmp_path,
    )
    versions = {package.name: package.version for package in locked}
    assert versions["ipykernel"] == "6.15.1"


def test_a_project_capping_typing_extensions_gets_a_kernel_that_starts(tmp_path: Path) -> None:
    # tensorflow 2.13 caps typing_extensions below 4.6; IPython 8.23.0 needs 4.6 without saying so
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("typing_extensions==4.5.0\nipython<8.24\n")
    locked = resolve_python(
        [requirements],
        list(KERNEL_REQUIREMENTS),
        python="3.11",
        arch="x86_64",
        glibc="2.36",
        exclude_newer="2026-01-01T00:00:00Z",
        root=tmp_path,
    )
    versions = {package.name: package.version for package in locked}
    assert versions["typing-extensions"] == "4.5.0"
    assert versions["ipython"] != "8.23.0" and versions["ipython"].startswith("8.")


def test_requirements_as_of_resolves_the_project_as_pypi_stood_that_day(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """The project's set sees the index of its day (requests 2.31.0, the newest on 2023-09-30); devenv's own
    tooling does not (JupyterLab >= 4.2 came in 2024), and the lock records the day it must match."""
    spec_path = copy_template("minimal", tmp_path / "project", project_name="it-as-of")
    (spec_path.parent / "requirements.in").write_text("requests\n")
    spec_path.write_text(spec_path.read_text() + "requirements_as_of: 2023-09-30\n")
    project = open_project(spec_path)
    assert project.spec.jupyter
    lock, _ = lock_project(client, project)
    versions = {package.name: package.version for package in lock.python}
    assert versions["requests"] == "2.31.0"
    assert (
        lock.inputs.requirements_as_of == "2023-09-30"
        and "requirements_as_of: 2023-09-30" in project.lock_path.read_text().replace('"', "").replace("'", "")
    )
    tooling = {package.name: package.version for package in lock.tooling}
    assert tuple(int(part) for part in tooling["jupyterlab"].split(".")[:2]) >= (4, 2)

    spec_path.write_text(spec_path.read_text().replace("requirements_as_of: 2023-09-30\n", ""))
    with pytest.raises(LockMismatch) as caught:
        checked_lock(open_project(spec_path))
    assert any("requirements_as_of" in line for line in caught.value.differences)
    relocked, _ = lock_project(client, open_project(spec_path), upgrade=True)
    assert {p.name: p.version for p in relocked.python}["requests"] != "2.31.0"
