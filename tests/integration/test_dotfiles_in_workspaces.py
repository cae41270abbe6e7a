"""Dotfiles for real: a public repository served over git's smart HTTP, set with `devenv dotfiles set`
against a real devenvd, cloned into ~/.dotfiles of a real workspace on the real Docker engine and its
install.sh run once per home; a spec with `dotfiles: false` gets none; a failed clone leaves the
workspace running and is tried again at the next start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.backends.base import ENGINE_HOST_NAME
from devenv.build.plan import IMAGE_HASH_LABEL
from devenv.build.project import build_project, lock_project, open_project
from devenv.lock.models import BaseImage
from devenv.testing.network import engine_host_address
from devenv.testing.projects import WorkspaceImage, copy_project, copy_template
from harness.devenvd import Devenvd
from harness.git_server import GitHttpServer, make_repo

pytestmark = pytest.mark.timeout(900)

INSTALL = b'echo run >> "$HOME/dotfiles-installed.count"\necho "dotfiles: installing"\n'


class PublicGitServer(GitHttpServer):
    """The test git server answering anyone, as a public repository does: no credentials asked or sent."""

    def check(self, authorization: str | None) -> bool:
        return True


@pytest.fixture(scope="module")
def served(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PublicGitServer, str]]:
    """The server, and the commit of its `dots` repository (install.sh counts its runs in the home)."""
    root = tmp_path_factory.mktemp("dotfiles-git")
    commit = make_repo(root / "work", root / "git", "dots", {"install.sh": INSTALL, ".vimrc": b"set number\n"})
    with PublicGitServer(root / "git", username="-", token="-", host=engine_host_address(client)) as server:
        yield server, commit


@pytest.fixture(scope="module")
def git_image(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> WorkspaceImage:
    """The minimal template without JupyterLab, with git (a spec without `repo:` must ask for it)."""
    directory = tmp_path_factory.mktemp("ws-dotfiles")
    spec = copy_template("minimal", directory, project_name="it-dots")
    spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false").replace("apt: []", "apt: [git]"))
    project = open_project(spec)
    lock_project(client, project)
    tag = build_project(client, project).tag
    return WorkspaceImage(directory, tag, client.images.get(tag).labels[IMAGE_HASH_LABEL])


def in_home(devenvd: Devenvd, name: str, script: str) -> str:
    return devenvd.cli("exec", name, "--", "bash", "-c", f"cd ~ && {script}", check=True).stdout


def test_cloned_and_installed_once_per_home_and_a_spec_can_opt_out(
    devenvd: Devenvd, git_image: WorkspaceImage, served: tuple[PublicGitServer, str], tmp_path: Path
) -> None:
    server, commit = served
    assert "no dotfiles repository set" in devenvd.cli("dotfiles", check=True).stdout

    # a repository that is not there: the workspace runs, the event names the fix, the home holds nothing
    devenvd.cli("dotfiles", "set", server.url("no-such-dots", host=ENGINE_HOST_NAME), check=True)
    folder = copy_project(git_image, tmp_path / "p", "it-dots")
    up = devenvd.cli("up", cwd=folder, check=True)
    assert "it-dots: running" in up.stdout and "dotfiles: could not clone" in up.stderr, up.stderr
    assert "tried again at the next start" in up.stderr and "Traceback" not in up.stderr
    assert ".dotfiles" not in in_home(devenvd, "it-dots", "ls -A")

    url = server.url("dots", host=ENGINE_HOST_NAME)
    assert f"dotfiles set to {url}" in devenvd.cli("dotfiles", "set", url, check=True).stdout
    assert json.loads(devenvd.cli("dotfiles", "--json", check=True).stdout)["url"] == url
    devenvd.cli("stop", "it-dots", check=True)
    started = devenvd.cli("start", "it-dots", check=True)
    assert f"dotfiles: cloned {url} into ~/.dotfiles and ran install.sh" in started.stderr, started.stderr
    assert in_home(devenvd, "it-dots", "cat dotfiles-installed.count") == "run\n"
    assert in_home(devenvd, "it-dots", "git -C .dotfiles rev-parse HEAD").strip() == commit
    assert in_home(devenvd, "it-dots", "stat -c %U .dotfiles/install.sh").strip() == "dev"
    assert not any(request.authorized is False for request in server.requests)  # the check answered all

    # another start: the home has its clone, so the script does not run again ...
    devenvd.cli("stop", "it-dots", check=True)
    again = devenvd.cli("start", "it-dots", check=True)
    assert "it-dots: running" in again.stdout and "dotfiles:" not in again.stderr
    assert in_home(devenvd, "it-dots", "cat dotfiles-installed.count") == "run\n"
    # ... and the counter does count a run (positive control): the same script, run by hand
    assert (
        in_home(devenvd, "it-dots", "bash .dotfiles/install.sh >/dev/null && cat dotfiles-installed.count")
        == "run\nrun\n"
    )
    events = devenvd.cli("events", "it-dots", check=True).stdout
    assert events.count("ran install.sh") == 1 and events.count("could not clone") == 1

    # a spec with `dotfiles: false`: the same person, the same setting, no clone and no request for it
    asked = len(server.requests)
    off = copy_project(git_image, tmp_path / "off", "it-nodots", extra="dotfiles: false\n")
    assert "it-nodots: running" in devenvd.cli("up", cwd=off, check=True).stdout
    listing = in_home(devenvd, "it-nodots", "ls -A").split()
    assert ".dotfiles" not in listing and "dotfiles-installed.count" not in listing and ".bashrc" in listing
    assert len(server.requests) == asked

    assert "removed" in devenvd.cli("dotfiles", "rm", check=True).stdout
    assert "no dotfiles repository set" in devenvd.cli("dotfiles", check=True).stdout
