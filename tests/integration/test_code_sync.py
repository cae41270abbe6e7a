"""The project folder in its workspace, through the real daemon, engine and `devenv` command: `up` places
a local git project's files (not the ignored ones) in the home, `sync` pushes later edits, refuses to
overwrite an edit made inside (naming the file, exit 1, the file untouched) and overwrites with --force."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd

NAME = "it-code"
HOME = "/home/dev/proj"


@dataclass
class World:
    daemon: Devenvd
    folder: Path
    up_stderr: str

    def inside(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli("exec", NAME, "--", *argv)

    def cat(self, path: str) -> str:
        done = self.inside("cat", f"{HOME}/{path}")
        assert done.returncode == 0, done.stderr
        return done.stdout


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def world(light_image: WorkspaceImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = copy_project(light_image, tmp_path_factory.mktemp("code") / "proj", NAME)
    (folder / "src").mkdir()
    (folder / "src" / "train.py").write_text("print('v1')\n")
    (folder / "README.md").write_text("readme v1\n")
    (folder / "gone.txt").write_text("deleted locally later\n")
    (folder / ".gitignore").write_text("secret.txt\n")
    (folder / "secret.txt").write_text("not for the workspace\n")
    _git(folder, "init", "-q", "-b", "main")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "first")
    (folder / "notes.txt").write_text("untracked, not ignored\n")
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    try:
        up = daemon.cli("up", cwd=folder, check=True)
        yield World(daemon, folder, up.stderr)
    finally:
        daemon.cleanup()


def test_up_places_the_checkout_minus_ignored_files(world: World) -> None:
    assert f"uploaded from {world.folder}" in world.up_stderr and "(git main@" in world.up_stderr, world.up_stderr
    assert world.cat("src/train.py") == "print('v1')\n"
    assert world.cat("notes.txt") == "untracked, not ignored\n"
    assert world.inside("test", "-e", f"{HOME}/secret.txt").returncode == 1
    owner = world.inside("stat", "-c", "%U %a", f"{HOME}/src/train.py")
    assert owner.stdout.split() == ["dev", "644"], owner.stdout


def test_sync_pushes_edits_and_deletions(world: World) -> None:
    (world.folder / "src" / "train.py").write_text("print('v2')\n")
    (world.folder / "gone.txt").unlink()
    dry = world.daemon.cli("sync", NAME, "--dry-run", cwd=world.folder, check=True)
    assert "would write: src/train.py" in dry.stdout and "would delete: gone.txt" in dry.stdout, dry.stdout
    assert world.cat("src/train.py") == "print('v1')\n"  # a dry run changes nothing
    done = world.daemon.cli("sync", NAME, cwd=world.folder, check=True)
    assert "wrote: src/train.py" in done.stdout, done.stdout
    assert world.cat("src/train.py") == "print('v2')\n"
    assert world.inside("test", "-e", f"{HOME}/gone.txt").returncode == 1


def test_sync_refuses_to_overwrite_an_edit_made_inside_then_force_does(world: World) -> None:
    edited = world.inside("sh", "-c", f"echo 'edited inside' > {HOME}/README.md")
    assert edited.returncode == 0, edited.stderr
    (world.folder / "README.md").write_text("readme v2\n")
    refused = world.daemon.cli("sync", NAME, cwd=world.folder)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "code_conflict" in refused.stderr and "README.md" in refused.stderr and "--force" in refused.stderr
    assert world.cat("README.md") == "edited inside\n"
    forced = world.daemon.cli("sync", NAME, "--force", cwd=world.folder, check=True)
    assert "wrote: README.md" in forced.stdout, forced.stdout
    assert world.cat("README.md") == "readme v2\n"
