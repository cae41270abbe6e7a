"""The same lock gives the same image ID, and `devenv verify` proves it: real builds on the real engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from devenv.build.builder import BuildResult
from devenv.build.project import Project, build_project, lock_project, open_project
from devenv.build.reproducible import rfc3339
from devenv.build.verify import verified_at
from devenv.lock.lockfile import read_lock
from devenv.lock.models import BaseImage
from devenv.lock.sdists import epoch
from devenv.testing.projects import copy_template

NAME = "it-repro"


@dataclass
class Twice:
    project: Project
    first: BuildResult
    second: BuildResult


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    """`devenv verify DIR` through the real CLI, as a person runs it."""
    return subprocess.run([sys.executable, "-m", "devenv", "verify", str(directory)], capture_output=True,
                          text=True, timeout=1200, env={**os.environ, "COLUMNS": "200"}, check=False)


@pytest.fixture(scope="module")
def twice(client: docker.DockerClient, cpu_base: BaseImage,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twice]:
    """The minimal template (JupyterLab included) locked once and built twice with no cache."""
    spec = copy_template("minimal", tmp_path_factory.mktemp("repro"), project_name=NAME)
    project = open_project(spec)
    lock_project(client, project)
    first = build_project(client, project, no_cache=True)
    second = build_project(client, project, no_cache=True)
    yield Twice(project, first, second)
    for image in {first.tag, first.image_id, second.image_id}:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)


def test_two_no_cache_builds_of_one_lock_give_the_same_image_id(client: docker.DockerClient, twice: Twice) -> None:
    assert not twice.first.cached and not twice.second.cached
    assert twice.first.steps_cached == 0 and twice.second.steps_cached == 0
    assert twice.second.image_id == twice.first.image_id
    image = client.images.get(twice.first.tag)
    assert image.id == twice.first.image_id
    # the config's time is the lock's resolved_at, and its labels are kept
    assert image.attrs["Created"] == rfc3339(epoch(read_lock(twice.project.lock_path).resolved_at))
    assert image.labels["devenv.spec-name"] == NAME
    assert twice.first.normalise_seconds < twice.first.seconds / 2


def test_verify_proves_the_image_in_use_and_records_it(client: docker.DockerClient, twice: Twice) -> None:
    done = _verify(twice.project.directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == twice.first.image_id
    assert verified_at(twice.first.image_id) is not None
    # the rebuilt image's temporary tag is gone; the image in use keeps its tag
    assert not temporary_tags(client) and client.images.get(twice.first.tag).id == twice.first.image_id


def test_verify_names_the_layer_and_the_file_that_differ(client: docker.DockerClient, twice: Twice) -> None:
    """The image in use changed after its build (a container's change committed onto its tag)."""
    container = client.containers.create(twice.first.tag, ["true"], entrypoint=["sh", "-c",
                                         "echo tampered > /etc/devenv-tampered"], user="root")
    try:
        container.start()
        container.wait()
        repository, _, tag = twice.first.tag.rpartition(":")
        container.commit(repository=repository, tag=tag)
    finally:
        container.remove(force=True)
    layers = len(client.images.get(twice.first.image_id).attrs["RootFS"]["Layers"])
    done = _verify(twice.project.directory)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verify_mismatch" in done.stderr and "rebuilds" in done.stderr
    assert f"first differing layer: {layers}" in done.stderr and "rebuilt none" in done.stderr
    assert "added etc/devenv-tampered" in done.stderr, done.stderr
    assert not temporary_tags(client)
    client.images.remove(twice.first.tag, noprune=True)  # the committed image; the built one stays
    client.api.tag(twice.first.image_id, repository, tag)  # and is back in use


def temporary_tags(client: docker.DockerClient) -> list[str]:
    """The tags `devenv verify` gives its rebuilt images while it compares."""
    return [tag for image in client.images.list(name=f"devenv/{NAME}") for tag in image.tags if ":verify-" in tag]


def test_verify_without_a_lock_or_an_image_is_a_usage_error(twice: Twice, tmp_path: Path) -> None:
    copy_template("minimal", tmp_path / "nolock", project_name=NAME)
    done = _verify(tmp_path / "nolock")
    assert done.returncode == 2 and "no devenv.lock" in done.stderr and "devenv build" in done.stderr
    unbuilt = tmp_path / "unbuilt"
    shutil.copytree(twice.project.directory, unbuilt)
    spec = unbuilt / "devenv.yaml"
    spec.write_text(spec.read_text().replace(f"name: {NAME}", "name: it-repro-unbuilt"))
    done = _verify(unbuilt)
    assert done.returncode == 2 and "not on this engine" in done.stderr and "devenv build" in done.stderr
