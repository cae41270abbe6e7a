"""The real-world corpus (tests/corpus): each entry names its source, holds only files `devenv init` reads,
and `devenv init` (the real CLI, no flag) reads every one of them into a devenv.yaml that validates.

The corpus is public ML repositories' metadata files copied verbatim at a recorded commit; the up benchmark
(tests/bench/bench_corpus.py) builds them. Here nothing needs an engine or the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devenv.spec import load_spec
from devenv.spec.discover import discover
from devenv.spec.models import SPEC_FILENAME
from harness.devenvd import devenv_command

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ENTRIES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
SOURCE = "SOURCE.yaml"
# what `devenv init` reads (devenv/spec/discover*.py); nothing else of a repository is kept
ALLOWED = re.compile(
    r"(requirements[^/]*\.(txt|in)|requirements/[^/]+\.(txt|in)|pyproject\.toml|environment\.ya?ml|env\.ya?ml"
    r"|packages\.txt|apt\.txt|\.python-version|runtime\.txt|Dockerfile"
    r"|\.devcontainer/(devcontainer\.json|Dockerfile|requirements[^/]*\.txt))"
)
IGNORED_DIRS = {".ruff_cache", "__pycache__", ".pytest_cache"}  # tools drop these beside a pyproject.toml
SOURCE_KEYS = {"repo", "commit", "committed", "path", "url", "license", "files", "why"}


def entry_files(folder: Path) -> list[str]:
    """The entry's files relative to it, SOURCE.yaml left out, tools' cache folders skipped."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and path.name != SOURCE and not IGNORED_DIRS & set(path.relative_to(folder).parts)
    )


def copy_entry(name: str, into: Path) -> Path:
    """A working copy of the entry's repository files, as a user's checkout holds them."""
    target = into / name
    shutil.copytree(CORPUS / name, target, ignore=shutil.ignore_patterns(SOURCE, *IGNORED_DIRS))
    return target


def test_corpus_has_at_least_25_entries() -> None:
    assert len(ENTRIES) >= 25, ENTRIES


def test_corpus_is_a_spread() -> None:
    """Devcontainers (with GPUs among them), conda environments, Dockerfiles, pyproject projects and apt lists."""
    files = [f for name in ENTRIES for f in entry_files(CORPUS / name)]
    gpu = [
        name
        for name in ENTRIES
        if (CORPUS / name / ".devcontainer/devcontainer.json").exists()
        and "gpu" in (CORPUS / name / ".devcontainer/devcontainer.json").read_text().lower()
    ]
    assert files.count(".devcontainer/devcontainer.json") >= 8 and len(gpu) >= 3, gpu
    assert sum(re.fullmatch(r"(environment|env)\.ya?ml", f) is not None for f in files) >= 3
    assert sum(f.endswith("Dockerfile") for f in files) >= 3
    assert files.count("pyproject.toml") >= 8
    assert {"packages.txt", "apt.txt", "runtime.txt", ".python-version"} <= set(files)


@pytest.mark.parametrize("name", ENTRIES)
def test_source_names_repository_and_commit(name: str) -> None:
    source = yaml.safe_load((CORPUS / name / SOURCE).read_text())
    assert isinstance(source, dict) and set(source) <= SOURCE_KEYS, source
    owner, repo = source["repo"].split("/")
    assert name == f"{owner}__{repo}"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), source["commit"]
    assert re.fullmatch(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z", source["committed"])
    assert source["url"].startswith(f"https://github.com/{source['repo']}/tree/{source['commit']}")
    if source.get("path"):
        assert source["url"].endswith("/" + source["path"]) and ".." not in source["path"].split("/")
    assert isinstance(source["why"], str) and len(source["why"]) > 20
    assert sorted(source["files"]) == entry_files(CORPUS / name), "files: lists exactly what the entry holds"


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_holds_only_files_init_reads(name: str) -> None:
    files = entry_files(CORPUS / name)
    assert files, "an entry holds at least one file"
    others = [f for f in files if not ALLOWED.fullmatch(f)]
    assert not others, f"not a file devenv init reads (code or docs stay out of the corpus): {others}"
    assert not any(f.endswith(".py") for f in files)


@pytest.mark.parametrize("name", ENTRIES)
def test_discover_reads_every_entry(name: str, tmp_path: Path) -> None:
    """The function `devenv init` calls finds something in each (no entry falls back to a template)."""
    found = discover(copy_entry(name, tmp_path), repo=False)
    assert found.found and found.sources, found.notes
    assert SPEC_FILENAME in found.files


@pytest.mark.parametrize("name", ENTRIES)
def test_devenv_init_writes_a_valid_spec(name: str, tmp_path: Path) -> None:
    """The real CLI, no flag, in a copy of the entry: exit 0, no traceback, a devenv.yaml that validates."""
    project = copy_entry(name, tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEVENV_")}
    env.update(DEVENV_HOME=str(tmp_path / "home"), NO_COLOR="1", COLUMNS="200")
    done = subprocess.run(
        [devenv_command(), "init", "--no-repo"], cwd=project, env=env, text=True, capture_output=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output, output
    assert "found nothing to read" not in output, output
    assert (project / SPEC_FILENAME).is_file()
    spec = load_spec(project / SPEC_FILENAME)
    for requirement in spec.requirements:
        assert (project / requirement).is_file(), f"devenv.yaml lists {requirement}, which init did not write"
