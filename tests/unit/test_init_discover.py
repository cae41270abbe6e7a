"""`devenv init` reading a project: each source in a small folder, conflicts, bad input, git, the CLI in-process.

The written spec must load (load_spec checks every requirement line as `devenv lock` does) and the generated
requirements must pass requirement_problems, so what init writes is what the lock accepts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devenv.errors import SpecInvalid, UsageError
from devenv.requirements import requirement_problems
from devenv.spec import load_spec
from devenv.spec.discover import Discovery, base_python, discover
from devenv.spec.discover_conda import conda_version
from devenv.spec.discover_git import clean_url
from devenv.spec.discover_python import GENERATED, PROJECT_HOOK, poetry_constraint
from devenv.spec.scaffold import init_from_repo
from harness.in_process_cli import cli

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEVENV_DEBUG", raising=False)
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def written(root: Path, **kwargs: object) -> Discovery:
    """init_from_repo, then the checks every written project must pass."""
    found, paths = init_from_repo(root, **kwargs)  # type: ignore[arg-type]
    assert all(path.is_file() for path in paths)
    spec = load_spec(root / "devenv.yaml")
    assert requirement_problems(root, list(spec.requirements)) == []
    assert (root / "devenv.yaml").read_text().startswith("# devenv.yaml: written by `devenv init`")
    return found


def texts(found: Discovery) -> str:
    return "\n".join(note.render() for note in found.notes)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


# ---- requirement files ----


def test_clean_requirements_file_is_listed_as_it_is(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"requirements.txt": "numpy==1.26.4\npandas  # data\n"})
    found = written(root)
    assert found.data["requirements"] == ["requirements.txt"]
    assert not (root / GENERATED).exists()
    assert "took      2 packages (the whole file) from requirements.txt" in texts(found)
    assert found.sources == ["requirements.txt"]


def test_refused_lines_are_rewritten_or_named(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {
            "requirements.txt": "numpy\n-e .\n-e git+https://github.com/org/lib.git@v1#egg=lib\n"
            "--index-url file:///srv/wheels\n./libs/tool\n-r extra.txt\n",
            "extra.txt": "scipy\n",
        },
    )
    found = written(root)
    generated = (root / GENERATED).read_text()
    assert "numpy\n" in generated and "lib @ git+https://github.com/org/lib.git@v1\n" in generated
    assert "-r extra.txt\n" in generated
    assert "file:" not in generated and "-e" not in generated
    assert generated.startswith("# Written by `devenv init` from requirements.txt")
    assert found.data["hooks"]["create"] == [PROJECT_HOOK, "pip install --no-deps ./libs/tool"]
    assert "line 4 '--index-url file:///srv/wheels' (file: URLs are not supported" in texts(found)


def test_problem_in_an_included_file_is_flattened(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {
            "requirements/base.txt": "-r common.txt\nrich\n",
            "requirements/common.txt": "httpx\n-e ../\n",
            "requirements/dev.txt": "pytest\n",
        },
    )
    found = written(root)
    generated = (root / GENERATED).read_text()
    assert "httpx\n" in generated and "rich\n" in generated
    assert found.data["hooks"]["create"] == [PROJECT_HOOK]
    assert "--extra dev" in found.choices


def test_compiled_requirements_txt_left_and_extras_offered(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {"requirements.in": "rich\n", "requirements.txt": "rich==13.7.1\n", "requirements-dev.txt": "pytest\n"},
    )
    found = written(root)
    assert found.data["requirements"] == ["requirements.in"]
    notes = texts(found)
    assert "requirements.txt: the file (pinned from requirements.in (pip-compile)" in notes
    assert "requirements-dev.txt: the file (an extra: take it with --extra dev)" in notes
    picked = written(root, extras=("dev",), force=True)
    assert picked.data["requirements"] == ["requirements.in", "requirements-dev.txt"]


# ---- pyproject.toml ----

HATCH = """\
[build-system]
requires = ["hatchling>=1.20", "hatch-vcs"]
build-backend = "hatchling.build"

[project]
name = "tool"
dynamic = ["version"]
dependencies = ["numpy"]
"""


def test_the_project_installs_offline_with_its_locked_build_backend(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"pyproject.toml": HATCH})
    found = written(root)
    lines = [line for line in (root / GENERATED).read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-3:] == ["numpy", "hatchling>=1.20", "hatch-vcs"]
    [hook] = found.data["hooks"]["create"]
    assert hook.endswith("pip install --no-deps --no-build-isolation -e .")
    assert "SETUPTOOLS_SCM_PRETEND_VERSION" in hook and "[ -e .git ]" in hook  # an uploaded folder has no .git
    assert (
        "took      2 build requirements (the project installs offline, with the locked backend) from "
        "pyproject.toml [build-system]" in texts(found)
    )
    assert requirement_problems(root, [GENERATED]) == []


PYPROJECT = """\
[project]
name = "Demo_Pkg"
requires-python = ">=3.10"
dependencies = ["requests>=2", "demo-pkg[fast]"]

[project.optional-dependencies]
fast = ["orjson"]
test = ["pytest-cov"]

[dependency-groups]
lint = ["ruff", {include-group = "types"}]
types = ["mypy"]
"""


def test_pyproject_dependencies_extras_and_groups(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"pyproject.toml": PYPROJECT})
    found = written(root)
    generated = (root / GENERATED).read_text()
    lines = [line for line in generated.splitlines() if line and not line.startswith("#")]
    assert lines[-4:] == [
        "requests>=2",
        "orjson",  # the project's own extra, expanded
        "setuptools>=64",
        "wheel",
    ]  # no [build-system]: PEP 517's default backend, locked
    assert found.data["hooks"]["create"] == [PROJECT_HOOK]
    assert {"--extra fast", "--extra test", "--group lint", "--group types"} <= set(found.choices)
    notes = texts(found)
    assert "took      python 3.11 (allowed by >=3.10) from pyproject.toml" in notes
    assert "took      2 packages of [project] dependencies (with extra fast) from pyproject.toml" in notes
    assert "pyproject.toml: extra test (take it with --extra test)" in notes
    assert "pyproject.toml: [dependency-groups] lint (take it with --group lint)" in notes
    found = written(root, extras=("test",), groups=("lint",), force=True)
    lines = (root / GENERATED).read_text().splitlines()
    assert {"pytest-cov", "ruff", "mypy"} <= set(lines)
    assert "take it with" not in texts(found)


def test_unknown_extra_lists_the_available_ones(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"pyproject.toml": PYPROJECT})
    with pytest.raises(UsageError) as raised:
        discover(root, extras=("gpu",))
    assert "--extra gpu" in raised.value.message
    assert raised.value.hint == "available: fast, test"
    assert not (root / "devenv.yaml").exists()


def test_poetry_dependencies(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {
            "pyproject.toml": """\
[tool.poetry.dependencies]
python = "^3.9"
numpy = "^1.24"
rich = {version = "~13.7", extras = ["jupyter"]}
local = {path = "../local"}
[tool.poetry.group.dev.dependencies]
pytest = "*"
"""
        },
    )
    found = written(root, groups=("dev",))
    lines = (root / GENERATED).read_text().splitlines()
    assert {"numpy>=1.24,<2", "rich[jupyter]>=13.7,<13.8", "pytest"} <= set(lines)
    assert "[tool.poetry.dependencies] local (not a plain version" in texts(found)
    assert "python 3.11 (allowed by >=3.9,<4)" in texts(found)


@pytest.mark.parametrize(
    ("poetry", "pep440"),
    [
        ("^1.2.3", ">=1.2.3,<2"),
        ("^0.2.3", ">=0.2.3,<0.3"),
        ("~1.2", ">=1.2,<1.3"),
        ("*", ""),
        ("1.0", "==1.0"),
        (">=1,<2", ">=1,<2"),
        ("^x", None),
    ],
)
def test_poetry_constraint(poetry: str, pep440: str | None) -> None:
    assert poetry_constraint(poetry) == pep440


# ---- conda, apt files, Dockerfile, devcontainer ----

ENVIRONMENT = """\
name: vision
channels: [pytorch, nvidia, conda-forge]
dependencies:
  - python=3.10
  - numpy=1.26
  - pytorch::pytorch>=2.1
  - cudatoolkit=11.8
  - ffmpeg
  - weirdpkg
  - pip:
    - wandb==0.17.0
"""


def test_conda_environment(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"environment.yml": ENVIRONMENT})
    found = written(root)
    lines = (root / GENERATED).read_text().splitlines()
    assert {"numpy==1.26.*", "torch>=2.1", "wandb==0.17.0"} <= set(lines)
    assert found.data["apt"] == ["ffmpeg"]
    assert found.data["base"] == "cuda" and found.data["python"] == base_python("cuda")
    notes = texts(found)
    assert "environment.yml: conda package cudatoolkit (no PyPI/apt equivalent; base: cuda provides CUDA)" in notes
    assert "environment.yml: conda package weirdpkg (no known PyPI/apt equivalent" in notes
    assert "environment.yml: python 3.10 (cannot be met: the cuda base provides Python" in notes


@pytest.mark.parametrize(
    ("conda", "pip"),
    [("=1.26", "==1.26.*"), ("1.26.4=py311_0", "==1.26.4.*"), (">=1.2", ">=1.2"), ("==2.0", "==2.0"), ("", "")],
)
def test_conda_version(conda: str, pip: str) -> None:
    assert conda_version(conda) == pip


def test_apt_files(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p", {"packages.txt": "# system\nlibgl1\nffmpeg\nNot A Package\n", "apt.txt": "graphviz\n"}
    )
    found = written(root)
    assert found.data["apt"] == ["ffmpeg", "graphviz", "libgl1"]
    assert found.data["requirements"] == []
    assert "packages.txt: 'Not A Package' (not a Debian package name)" in texts(found)


DOCKERFILE = """\
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends \\
    libsndfile1 curl=7.88.1-10 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /app/
RUN pip install --no-cache-dir -r /app/requirements.txt && pip install --upgrade pip einops==0.8.0
RUN pip install -e .
CMD ["python", "main.py"]
"""


def test_dockerfile(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"docker/Dockerfile": DOCKERFILE, "requirements.txt": "scipy\n"})
    found = written(root)
    assert found.data["apt"] == ["curl", "libsndfile1"]
    assert found.data["requirements"] == ["requirements.txt", GENERATED]
    assert "einops==0.8.0" in (root / GENERATED).read_text().splitlines()
    assert found.data["hooks"]["create"] == [PROJECT_HOOK]
    notes = texts(found)
    assert "docker/Dockerfile: CMD, COPY, FROM (devenv builds from its pinned base" in notes
    assert "took      python 3.11 from docker/Dockerfile" in notes
    assert "`rm -rf /var/lib/apt/lists/*`" in notes


def test_cuda_dockerfile_and_empty_conda_environment(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {
            "Dockerfile": "FROM nvidia/cuda:12.1.0-runtime-ubuntu22.04\nRUN apt-get install -y $EXTRA git\n",
            "environment.yml": "name: x\ndependencies:\n",
        },
    )
    found = written(root)
    assert found.data["base"] == "cuda" and found.data["apt"] == ["git"]
    notes = texts(found)
    assert "base cuda, for system CUDA: Dockerfile FROM nvidia/cuda" in notes
    assert "Dockerfile: apt package '$EXTRA' (not a Debian package name" in notes


def test_devcontainer_keys_win_and_gpu_is_written(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {
            ".devcontainer/devcontainer.json": '{"name": "Vision Lab", "forwardPorts": [6006], '
            '"hostRequirements": {"gpu": true}, "features": {"x": {}}}',
            "requirements.txt": "jax[cuda12]\n",
        },
    )
    found = written(root)
    assert found.data["name"] == "p"  # the folder's name: a devcontainer's ("Python 3") is only --from's
    assert found.data["ports"] == [6006] and found.data["resources"] == {"gpu": 1}
    assert found.data["requirements"] == ["requirements.txt"]
    assert "feature 'x' not imported" in texts(found)


def test_devcontainer_hooks_add_to_the_project_hook(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        {
            ".devcontainer.json": '{"postCreateCommand": "pip install -e .", "postStartCommand": "echo hi"}',
            "pyproject.toml": '[project]\nname = "x"\n',
        },
    )
    found = written(root)
    assert found.data["hooks"] == {"create": [PROJECT_HOOK], "start": ["echo hi"]}


def test_gpu_hint_is_a_suggestion(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p", {"requirements.txt": "--extra-index-url https://download.pytorch.org/whl/cu121\ntorch\n"}
    )
    found = written(root)
    assert "resources" not in found.data and "base" not in found.data
    assert "suggestion: add `resources: {gpu: 1}`" in texts(found)


# ---- python version ----


def test_two_sources_disagree_on_python(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p", {".python-version": "3.11.4\n", "runtime.txt": "python-3.9.18\n", "requirements.txt": "rich\n"}
    )
    found = written(root)
    assert found.data["python"] == base_python("cpu") == "3.11"
    notes = texts(found)
    assert "python: the project's files disagree (.python-version says 3.11, runtime.txt says 3.9)" in notes
    assert "took      python 3.11 from .python-version" in notes
    assert "runtime.txt: python 3.9 (cannot be met: the cpu base provides Python 3.11 only)" in notes


def test_requires_python_that_cannot_be_met(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"pyproject.toml": '[project]\nname = "x"\nrequires-python = "<3.10"\n'})
    found = written(root)
    assert "pyproject.toml: python <3.10 (cannot be met: the cpu base provides Python 3.11" in texts(found)


# ---- bad input ----


def test_malformed_toml_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p", {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["a",\n= oops\n'})
    with pytest.raises(SpecInvalid) as raised:
        discover(root)
    issue = raised.value.issues[0]
    assert (issue.file, issue.line) == ("pyproject.toml", 4)
    code, out, err = cli(capsys, "init", "--dir", str(root))
    assert code == 2 and "pyproject.toml:4" in err and "Traceback" not in out + err
    assert not (root / "devenv.yaml").exists()


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"environment.yml": "dependencies:\n  - numpy\n  bad: [\n"})
    with pytest.raises(SpecInvalid) as raised:
        discover(root)
    assert raised.value.issues[0].file == "environment.yml"
    assert raised.value.issues[0].line is not None


def test_symlink_out_of_the_project_is_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = project(tmp_path / "outside", {"secret.txt": "TOPSECRETVALUE\n"}) / "secret.txt"
    root = project(tmp_path / "p", {"pyproject.toml": '[project]\nname = "x"\n'})
    (root / "requirements.txt").symlink_to(secret)
    (root / ".python-version").symlink_to(secret)
    code, out, err = cli(capsys, "init", "--dir", str(root))
    assert code == 0, err
    assert "TOPSECRETVALUE" not in out + err + "".join(p.read_text() for p in root.iterdir() if not p.is_symlink())
    assert "leads outside the project folder" in out
    load_spec(root / "devenv.yaml")


# ---- git ----


@pytest.mark.parametrize(
    ("url", "clean", "stripped"),
    [
        ("https://user:ghp_secret@github.com/org/repo.git", "https://github.com/org/repo.git", True),
        ("https://ghp_token@github.com/org/repo.git", "https://github.com/org/repo.git", True),
        ("https://gitlab.com/org/repo.git?private_token=x", "https://gitlab.com/org/repo.git", True),
        ("ssh://git:pw@host/repo.git", "ssh://git@host/repo.git", True),
        ("ssh://git@host/repo.git", "ssh://git@host/repo.git", False),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git", False),
    ],
)
def test_credentials_are_stripped(url: str, clean: str, stripped: bool) -> None:
    assert clean_url(url, Path("/")) == (clean, stripped)


def checkout(tmp_path: Path, remote_url: str | None = None) -> Path:
    """A repository with one pushed commit on branch `feature`, its remote a bare repository on disk."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    root = project(tmp_path / "proj", {"requirements.txt": "rich\n"})
    git(root.parent, "init", "-q", "-b", "feature", str(root))
    git(root, "add", "requirements.txt")
    git(root, "commit", "-q", "-m", "first")
    git(root, "remote", "add", "origin", str(bare))
    git(root, "push", "-q", "-u", "origin", "feature")
    if remote_url:
        git(root, "remote", "set-url", "origin", remote_url)
    return root


def test_clean_pushed_checkout_fills_repo(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    found = written(root)
    assert found.data["repo"] == {"url": str(tmp_path / "remote.git"), "ref": "feature"}
    assert "git" in found.sources


def test_local_edits_leave_repo_out_unless_forced(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    (root / "requirements.txt").write_text("rich\nnumpy\n")
    found = written(root)
    assert "repo" not in found.data
    assert "1 file has uncommitted changes: `devenv up` uploads this folder" in texts(found)
    git(root, "commit", "-qam", "second")
    found = written(root, force=True)
    assert "repo" not in found.data
    assert "1 commit is not pushed to origin/feature" in texts(found)
    assert written(root, force=True, repo=True).data["repo"]["ref"] == "feature"
    git(root, "push", "-q")
    assert "repo" not in written(root, force=True, repo=False).data


def test_nothing_but_a_checkout_gives_the_template_with_repo(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    git(root, "rm", "-q", "requirements.txt")
    git(root, "commit", "-qm", "empty")
    git(root, "push", "-q")
    found, _ = init_from_repo(root)
    spec = load_spec(root / "devenv.yaml")
    assert not found.found and spec.template == "minimal"
    assert spec.repo is not None and spec.repo.ref == "feature"


def test_token_in_remote_is_never_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = checkout(tmp_path, "https://oauth2:glpat-SECRETTOKEN@gitlab.example.com/org/repo.git")
    code, out, err = cli(capsys, "init", "--dir", str(root), "--repo")
    assert code == 0, err
    spec = (root / "devenv.yaml").read_text()
    assert "SECRETTOKEN" not in spec + out + err
    assert load_spec(root / "devenv.yaml").repo.url == "https://gitlab.example.com/org/repo.git"  # type: ignore[union-attr]
    assert "credentials removed" in out


# ---- the CLI ----


def test_cli_requirements_and_pyproject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Today's failure case: a folder with requirements.txt and pyproject.toml, and `devenv init` alone."""
    root = project(
        tmp_path / "my_proj", {"requirements.txt": "numpy\n", "pyproject.toml": PYPROJECT, ".python-version": "3.11\n"}
    )
    os.chdir(root)
    code, out, err = cli(capsys, "init")
    assert code == 0, err
    assert "took      1 package (the whole file) from requirements.txt" in out
    assert "took      python 3.11 from .python-version" in out
    assert "available: --extra fast, --extra test, --group lint, --group types" in out
    spec = load_spec(root / "devenv.yaml")
    assert spec.name == "my-proj"
    assert spec.requirements == ["requirements.txt", GENERATED]
    assert spec.hooks.create == [PROJECT_HOOK]
    code, out, err = cli(capsys, "init")
    assert code == 2 and "--force" in err


def test_cli_nothing_found_writes_the_minimal_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "empty", {"README.md": "hi\n"})
    code, out, err = cli(capsys, "init", "--dir", str(root))
    assert code == 0, err
    assert "found nothing to read" in out
    assert load_spec(root / "devenv.yaml").template == "minimal"


def test_cli_refuses_flags_that_do_not_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "init", "--template", "minimal", "--extra", "dev", "--dir", str(tmp_path / "x"))
    assert code == 2 and "--extra" in err
    code, _, err = cli(capsys, "init", "--dir", str(tmp_path / "missing"))
    assert code == 2 and "--template" in err


def test_a_devcontainer_hook_that_reinstalls_locked_requirements_is_left_out(tmp_path: Path) -> None:
    devcontainer = (
        '{"image": "mcr.microsoft.com/devcontainers/python:3.11", '
        '"postCreateCommand": "pip3 install --user -r requirements.txt", '
        '"postStartCommand": "pip install --user pre-commit && pre-commit install"}'
    )
    root = project(tmp_path / "p", {"requirements.txt": "numpy\n", ".devcontainer/devcontainer.json": devcontainer})
    found = written(root)
    assert "requirements.txt" in found.data["requirements"]
    hooks = found.data.get("hooks", {})
    assert hooks.get("create", []) == []  # it would reinstall (and unpin) what the lock holds
    assert hooks["start"] == ["pip install pre-commit && pre-commit install"]  # --user refused in the venv
    assert "left out: requirements.txt is in devenv.lock already" in texts(found)


def test_another_pythons_apt_packages_become_the_bases(tmp_path: Path) -> None:
    dockerfile = "FROM ubuntu:16.04\nRUN apt-get update && apt-get install -y python3.5-dev python3-pip git\n"
    found = written(project(tmp_path / "p", {"Dockerfile": dockerfile, "requirements.txt": "six\n"}))
    assert found.data["apt"] == ["git", "python3-dev"]  # no python3.5-dev in Debian: the base's headers instead
    notes = texts(found)
    assert "apt python3.5-dev taken as python3-dev (the headers of the base's Python)" in notes
    assert "apt package python3-pip (the base provides Python" in notes


@pytest.mark.parametrize("filename", ["env.yml", "conda.yaml", "binder/environment.yml"])
def test_a_conda_file_by_another_common_name_is_read(tmp_path: Path, filename: str) -> None:
    root = project(
        tmp_path / "p", {filename: "name: lab\ndependencies:\n  - termcolor=2.1.0\n  - pip:\n      - dotmap==1.3.30\n"}
    )
    found = written(root)
    lines = (root / GENERATED).read_text().splitlines()
    assert {"termcolor==2.1.0.*", "dotmap==1.3.30"} <= set(lines)
    assert f"from {filename}" in texts(found)
