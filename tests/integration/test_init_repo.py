"""`devenv init` in a real git checkout, through the real `devenv` command: it reads the project, fills `repo:`
only for a clean pushed branch, never writes a token, and `devenv lock` resolves what it wrote."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devenv.lock.models import BaseImage
from devenv.spec import load_spec
from harness.devenvd import Devenvd

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def devenv(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("devenv")
    assert binary, "devenv is installed by tests/setup.sh"
    return subprocess.run(
        [binary, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, check=True, env={**os.environ, **GIT_ENV}
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A project pushed to a bare remote on disk, on branch `feature` (one commit ahead of main)."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    root = tmp_path / "Vision Project"
    root.mkdir()
    (root / "requirements.txt").write_text("six\n-e .\n")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "vision"\nversion = "0.1"\ndependencies = ["idna"]\n'
        '[project.optional-dependencies]\ntest = ["iniconfig"]\n'
    )
    (root / ".python-version").write_text("3.11\n")
    (root / "packages.txt").write_text("jq\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", str(remote))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    git(root, "push", "-q", "-u", "origin", "main")
    git(root, "switch", "-q", "-c", "feature")
    (root / "train.py").write_text("print('train')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "train")
    git(root, "push", "-q", "-u", "origin", "feature")
    return root


def test_init_reads_a_checkout_and_lock_resolves_it(checkout: Path, cpu_base: BaseImage, devenvd: Devenvd) -> None:
    done = devenv(checkout, "init", "--extra", "test")
    assert done.returncode == 0, done.stderr
    assert f"took      repo {checkout.parent / 'remote.git'} ref feature (remote origin) from git" in done.stdout
    assert "took      python 3.11 from .python-version" in done.stdout
    assert "took      1 Debian package from packages.txt" in done.stdout
    spec = load_spec(checkout / "devenv.yaml")
    assert spec.name == "vision-project"
    assert spec.repo is not None and spec.repo.url == str(checkout.parent / "remote.git")
    assert spec.repo.ref == "feature"
    assert spec.apt == ["jq"]
    assert spec.hooks.create == ["pip install --no-deps --no-build-isolation -e ."]
    assert spec.requirements == ["requirements.devenv.in"]
    generated = (checkout / "requirements.devenv.in").read_text().splitlines()
    assert {"six", "idna", "iniconfig"} <= set(generated)
    assert devenv(checkout, "validate").returncode == 0

    locked = devenvd.cli("lock", cwd=checkout)  # resolved by the daemon, written here
    assert locked.returncode == 0, locked.stderr
    lock = (checkout / "devenv.lock").read_text()
    for package in ("six", "idna", "iniconfig"):
        assert f"- name: {package}\n" in lock


def test_local_work_is_uploaded_and_tokens_never_written(checkout: Path) -> None:
    (checkout / "train.py").write_text("print('edited')\n")
    done = devenv(checkout, "init")
    assert done.returncode == 0, done.stderr
    assert "1 file has uncommitted changes: `devenv up` uploads this folder" in done.stdout
    assert load_spec(checkout / "devenv.yaml").repo is None

    git(checkout, "commit", "-qam", "edit")
    git(checkout, "remote", "set-url", "origin", "https://oauth2:glpat-SECRETTOKEN@git.example.com/lab/vision.git")
    done = devenv(checkout, "init", "--force")
    assert done.returncode == 0, done.stderr
    assert "not pushed" in done.stdout and load_spec(checkout / "devenv.yaml").repo is None
    done = devenv(checkout, "init", "--force", "--repo")
    assert done.returncode == 0, done.stderr
    spec = load_spec(checkout / "devenv.yaml")
    assert spec.repo is not None and spec.repo.url == "https://git.example.com/lab/vision.git"
    assert "SECRETTOKEN" not in (checkout / "devenv.yaml").read_text() + done.stdout + done.stderr
