"""Code, data and records, without a daemon: the spec's repo/data, what they add to the lock, the facts a
record is made of, the setup scripts (checked by bash and run for real against local git and DVC), the env
files and the hints a failed step gives."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from devenv.backends.base import HOME_MOUNT
from devenv.build.project import Project, lock_inputs, open_project
from devenv.build.tooling import DVC_REQUIREMENT, WANDB_REQUIREMENT, versioning_apt, versioning_python
from devenv.errors import SpecInvalid, SpecIssue
from devenv.resources import images_dir
from devenv.spec import SPEC_FILENAME, Spec, load_spec_text
from devenv.spec.models import Data, Repo
from devenv.testing.projects import copy_template
from devenv.versioning import scripts
from devenv.versioning.env import SECRETS_ENV_NAME, exports, secret_files, workspace_env
from devenv.versioning.facts import data_hash, data_outs, parse_facts
from devenv.versioning.steps import _clone_hint, _data_hint
from harness.dvc_repo import make_dvc_repo
from harness.git_server import GitHttpServer, commit_files, git, git_env, make_repo

BASH = shutil.which("bash") or "/bin/bash"


def load(text: str, base: Path) -> Spec:
    return load_spec_text(textwrap.dedent(text), SPEC_FILENAME, base)


def issues(text: str, base: Path) -> list[SpecIssue]:
    with pytest.raises(SpecInvalid) as caught:
        load(text, base)
    return caught.value.issues


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "requirements.in").write_text("numpy\n")
    return tmp_path


# ---- the spec ----------------------------------------------------------------------------------


def test_data_without_a_repo_is_an_error_at_data_with_the_hint(base: Path) -> None:
    found = issues(
        """\
        name: proj
        data:
          remote: s3://bucket/store
        """,
        base,
    )
    assert [issue.field for issue in found] == ["data"]
    assert "needs a repo" in found[0].message
    assert found[0].hint and "repo:" in found[0].hint
    assert found[0].line == 3  # where data's mapping is written
    # with a repo it is fine, and a broken repo is reported as itself, not as "data needs a repo"
    assert load("name: proj\nrepo: {url: 'https://h/o/r.git'}\ndata: {remote: s3://b/x}\n", base).data is not None
    broken = issues("name: proj\nrepo: {ref: main}\ndata: {remote: s3://b/x}\n", base)
    assert [issue.field for issue in broken] == ["repo.url"]


def test_urls_with_a_password_or_token_are_refused_without_repeating_it(base: Path) -> None:
    found = issues(
        """\
        name: proj
        repo:
          url: https://bob:ghp_t0ken@github.com/team/vision.git
        data:
          remote: s3://bucket/store
          endpoint: http://key:s3cret@minio:9000
        """,
        base,
    )
    assert [issue.field for issue in found] == ["repo.url", "data.endpoint"]
    assert "token_secret" in (found[0].hint or "") and "secrets" in (found[1].hint or "")
    shown = " ".join(f"{issue.message} {issue.hint}" for issue in found)
    assert "ghp_t0ken" not in shown and "s3cret" not in shown
    # a user name alone (ssh, or a token given by the credential helper) is fine
    assert load("name: proj\nrepo: {url: 'https://bob@github.com/t/v.git'}\n", base).repo is not None


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("https://github.com/team/vision.git", "vision"),
        ("https://github.com/team/vision", "vision"),
        ("https://github.com/team/vision/", "vision"),
        ("ssh://git@github.com:22/team/vision.git", "vision"),
        ("git@github.com:team/vision.git", "vision"),
        ("git@host:name.git", "name"),
        ("/srv/git/data-set_1.git", "data-set_1"),
        ("https://host/team/has space.git", "repo"),  # not a folder name: a safe default
        ("https://host/team/.git", "repo"),
        ("https://host/team/.hidden.git", "repo"),
    ],
)
def test_repo_folder_comes_from_the_urls_last_part(url: str, folder: str) -> None:
    assert Repo(url=url).folder == folder
    assert scripts.repo_dir(Repo(url=url)) == f"{HOME_MOUNT}/{folder}"


def test_repo_path_overrides_the_folder() -> None:
    assert Repo(url="git@github.com:team/vision.git", path="work").folder == "work"
    assert scripts.repo_dir(Repo(url="git@github.com:team/vision.git", path="work")) == f"{HOME_MOUNT}/work"


@pytest.mark.parametrize("path", ["../up", "a/b", ".", "..", ".hidden", "", "/abs", "has space", "x" * 129])
def test_a_bad_repo_path_is_rejected(base: Path, path: str) -> None:
    found = issues(f"name: proj\nrepo:\n  url: https://h/o/r.git\n  path: {json.dumps(path)}\n", base)
    assert [issue.field for issue in found] == ["repo.path"]
    assert found[0].hint and "folder" in found[0].hint


@pytest.mark.parametrize("name", ["git_token", "Git-Token", "GIT-TOKEN", "1TOKEN"])
def test_token_secret_must_be_a_secret_name(name: str) -> None:
    with pytest.raises(ValidationError, match="not a secret name"):
        Repo(url="https://h/o/r.git", token_secret=name)
    assert Repo(url="https://h/o/r.git", token_secret="GIT_TOKEN").token_secret == "GIT_TOKEN"


def test_token_secret_holding_a_value_is_refused_without_echoing_it(base: Path) -> None:
    found = issues("name: proj\nrepo:\n  url: https://h/o/r.git\n  token_secret: GIT_TOKEN=ghp_abcdef123\n", base)
    assert [issue.field for issue in found] == ["repo.token_secret"]
    assert "looks like it holds a value" in found[0].message
    assert "ghp_abcdef123" not in found[0].render()


def test_data_remote_kinds() -> None:
    assert Data(remote="/srv/dvc").remote_is_path and Data(remote="/srv/dvc").remote_is_url
    assert Data(remote="s3://b/x").remote_is_url and not Data(remote="s3://b/x").remote_is_path
    assert not Data(remote="storage").remote_is_url and not Data(remote="storage").remote_is_path


# ---- what the lock gets ------------------------------------------------------------------------

REPO = {"repo": {"url": "https://h/o/r.git"}}


@pytest.mark.parametrize(
    ("extra", "apt", "python"),
    [
        ({}, [], []),
        (REPO, ["git"], []),
        ({**REPO, "data": {"remote": "s3://bucket/store"}}, ["git"], [DVC_REQUIREMENT, "dvc-s3"]),
        (
            {**REPO, "data": {"remote": "storage", "endpoint": "http://minio:9000"}},
            ["git"],
            [DVC_REQUIREMENT, "dvc-s3"],
        ),
        (
            {**REPO, "data": {"remote": "s3://b/x", "endpoint": "http://minio:9000"}},
            ["git"],
            [DVC_REQUIREMENT, "dvc-s3"],
        ),
        ({**REPO, "data": {"remote": "gs://bucket/store"}}, ["git"], [DVC_REQUIREMENT, "dvc-gs"]),
        ({**REPO, "data": {"remote": "/srv/dvc-store"}}, ["git"], [DVC_REQUIREMENT]),
        ({**REPO, "data": {"remote": "storage"}}, ["git"], [DVC_REQUIREMENT]),
        ({"tracking": {"wandb": {"project": "p"}}}, [], [WANDB_REQUIREMENT]),
        ({"tracking": {}}, [], []),
        (
            {**REPO, "data": {"remote": "/srv/d"}, "tracking": {"wandb": {"project": "p"}}},
            ["git"],
            [DVC_REQUIREMENT, WANDB_REQUIREMENT],
        ),
    ],
)
def test_versioning_needs(extra: dict[str, object], apt: list[str], python: list[str]) -> None:
    spec = Spec.model_validate({"name": "proj", **extra})
    assert versioning_apt(spec) == apt
    assert versioning_python(spec) == python


def project_with(folder: Path, extra: str, *, apt: str = "[]") -> Project:
    spec = copy_template("minimal", folder, project_name="proj")
    text = spec.read_text()
    assert "apt: []\n" in text
    spec.write_text(text.replace("apt: []\n", f"apt: {apt}\n") + textwrap.dedent(extra))
    return open_project(spec)


def test_lock_inputs_include_git_dvc_its_plugin_and_wandb(tmp_path: Path) -> None:
    plain = lock_inputs(project_with(tmp_path / "plain", ""), "x86_64")
    assert "git" not in plain.apt
    assert not any(item.startswith(("dvc", "wandb")) for item in plain.extra_python)
    full = lock_inputs(
        project_with(
            tmp_path / "full",
            """\
        repo:
          url: https://h/o/r.git
        data:
          remote: s3://bucket/store
          endpoint: http://minio:9000
        tracking:
          wandb:
            project: exp
        """,
        ),
        "x86_64",
    )
    assert full.apt == ["git"]
    assert {DVC_REQUIREMENT, "dvc-s3", WANDB_REQUIREMENT} <= set(full.extra_python)
    assert set(plain.extra_python) < set(full.extra_python)  # the kernel's requirement stays
    directory = lock_inputs(
        project_with(
            tmp_path / "dir",
            """\
        repo: {url: 'https://h/o/r.git'}
        data: {remote: /srv/dvc}
        """,
        ),
        "x86_64",
    )
    assert DVC_REQUIREMENT in directory.extra_python and "dvc-s3" not in directory.extra_python
    assert directory != full and directory != plain  # a changed remote kind changes the lock's inputs
    gs = lock_inputs(
        project_with(tmp_path / "gs", "repo: {url: 'https://h/o/r.git'}\ndata: {remote: 'gs://b/x'}\n"), "x86_64"
    )
    assert "dvc-gs" in gs.extra_python and "dvc-s3" not in gs.extra_python


def test_git_is_added_to_apt_once_and_sorted(tmp_path: Path) -> None:
    project = project_with(tmp_path / "p", "repo: {url: 'https://h/o/r.git'}\n", apt="[zlib1g, git, curl]")
    assert lock_inputs(project, "x86_64").apt == ["curl", "git", "zlib1g"]
    assert lock_inputs(project_with(tmp_path / "q", "", apt="[curl]"), "x86_64").apt == ["curl"]


# ---- facts -------------------------------------------------------------------------------------

SINGLE = "outs:\n- md5: 1111\n  size: 8\n  hash: md5\n  path: x.csv\n"
FOLDER = "outs:\n- md5: 2222.dir\n  size: 80\n  nfiles: 3\n  hash: md5\n  path: images/\n"
LOCK = textwrap.dedent("""\
    schema: '2.0'
    stages:
      prepare:
        cmd: python prepare.py
        deps:
        - path: raw
          md5: dep0.dir
        outs:
        - path: prepared/train.parquet
          md5: '3333'
      train:
        cmd: python train.py
        outs:
        - path: model.pkl
          md5: '4444'
    """)


def test_data_outs_from_dvc_files_relative_to_the_repo() -> None:
    outs = data_outs({"data/x.csv.dvc": SINGLE, "images.dvc": FOLDER, "sub/dir/y.dvc": SINGLE.replace("x.csv", "y")})
    assert outs == {"data/x.csv": "1111", "images": "2222.dir", "sub/dir/y": "1111"}


def test_data_outs_from_dvc_lock_stages_but_not_their_deps() -> None:
    assert data_outs({"dvc.lock": LOCK}) == {"prepared/train.parquet": "3333", "model.pkl": "4444"}
    assert data_outs({"pipelines/a/dvc.lock": LOCK}) == {
        "pipelines/a/prepared/train.parquet": "3333",
        "pipelines/a/model.pkl": "4444",
    }


@pytest.mark.parametrize(
    "broken",
    [
        "outs: [\n- md5: 1\n",  # a merge left it half-written
        "<<<<<<< HEAD\nouts:\n- md5: 1\n  path: z\n=======\n",
        "- just\n- a list\n",
        "a scalar",
        "",
    ],
)
def test_malformed_dvc_files_are_skipped(broken: str) -> None:
    assert data_outs({"data/x.csv.dvc": SINGLE, "data/broken.dvc": broken}) == {"data/x.csv": "1111"}


@pytest.mark.parametrize(
    "odd",
    [
        "outs: 5\n",
        "outs: {path: z, md5: '1'}\n",
        "stages: [a, b]\n",
        "stages:\n  s: just text\n",
    ],
)
def test_well_formed_yaml_of_the_wrong_shape_is_skipped_too(odd: str) -> None:
    """A .dvc or dvc.lock whose YAML reads fine but holds the wrong types must not break the facts
    (parse_facts would raise, and the setup step only survives ValueError/BackendError)."""
    name = "dvc.lock" if odd.startswith("stages") else "data/odd.dvc"
    assert data_outs({"data/x.csv.dvc": SINGLE, name: odd}) == {"data/x.csv": "1111"}


def test_data_hash_is_stable_and_follows_every_md5() -> None:
    outs = {"data/a.csv": "aaaa", "data/b.csv": "bbbb", "images": "cccc.dir"}
    same = dict(reversed(list(outs.items())))
    assert list(same) != list(outs)
    digest = data_hash(outs)
    assert digest is not None and len(digest) == 64
    assert data_hash(same) == digest
    assert data_hash({**outs, "data/b.csv": "bbbc"}) != digest
    assert data_hash({**outs, "data/c.csv": "bbbb"}) != digest  # a new file
    assert data_hash({"data/a.csv": "aaaa", "data/b.csv": "bbbb"}) != digest  # a file less
    assert data_hash({"data/a.csv": "aaaa", "data/bb.csv": "bbb"}) != data_hash(
        {"data/a.csv": "aaaa", "data/b.csv": "bbbb"}
    )
    assert data_hash({}) is None


def test_parse_facts_reads_the_scripts_document() -> None:
    document = {
        "repo": {
            "commit": "c0ffee" * 6 + "abcd",
            "branch": "main",
            "upstream": "origin/main",
            "ab": "+1 -0",
            "dirty": True,
            "changes": 2,
            "diff_hash": "d" * 64,
            "remote": "https://h/o/r.git",
        },
        "dvc_files": {"data/x.csv.dvc": SINGLE, "dvc.lock": LOCK},
        "wandb_runs": ["abc123", "def456"],
    }
    facts = parse_facts(json.dumps(document))
    assert facts.repo is not None
    assert (facts.repo.commit, facts.repo.branch, facts.repo.dirty, facts.repo.changes) == (
        document["repo"]["commit"],
        "main",
        True,
        2,
    )  # type: ignore[index]
    assert (facts.repo.ab, facts.repo.upstream, facts.repo.diff_hash) == ("+1 -0", "origin/main", "d" * 64)
    assert facts.data_files == {"data/x.csv": "1111", "prepared/train.parquet": "3333", "model.pkl": "4444"}
    assert facts.data_hash == data_hash(facts.data_files)
    assert facts.wandb_runs == ["abc123", "def456"]
    assert facts.to_json()["repo"]["commit"] == document["repo"]["commit"]  # type: ignore[index]
    empty = parse_facts('{"repo": null, "dvc_files": {}, "wandb_runs": []}')
    assert (empty.repo, empty.data_files, empty.data_hash, empty.wandb_runs) == (None, {}, None, [])
    with pytest.raises(ValueError):
        parse_facts("fatal: not a git repository\n")


# ---- scripts: syntax and quoting ---------------------------------------------------------------


def bash_syntax(script: str) -> None:
    done = subprocess.run([BASH, "-n", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


NASTY_URL = 'https://h/o/it\'s a "repo"; touch /tmp/pwned-$(id -u) `id`.git'


def test_clone_script_is_valid_bash_and_quotes_the_url() -> None:
    script = scripts.clone_script(Repo(url=NASTY_URL, ref="v1; rm -rf ~"))
    bash_syntax(script)
    assert "/tmp/pwned" in script  # the URL is there, but only as a quoted word:
    clone_line = next(line for line in script.splitlines() if line.startswith("git clone"))
    assert shlex.split(clone_line.split(" || ")[0])[-2] == NASTY_URL
    checkout_line = next(line for line in script.splitlines() if "checkout" in line)
    assert "'v1; rm -rf ~'" in checkout_line
    bash_syntax(" ".join(shlex.quote(word) for word in scripts.as_dev(script)))


def test_the_credential_helper_is_configured_only_with_a_token_secret() -> None:
    without = scripts.clone_script(Repo(url="https://h/o/r.git"))
    assert "credential.helper" not in without and scripts.CREDENTIAL_HELPER not in without
    with_token = scripts.clone_script(Repo(url="https://h/o/r.git", token_secret="GIT_TOKEN", username="bot"))
    bash_syntax(with_token)
    clone_line = next(line for line in with_token.splitlines() if line.startswith("git clone"))
    words = shlex.split(clone_line.split(" || ")[0])
    assert words[words.index("credential.helper=") - 1] == "-c"  # inherited helpers are reset first
    assert f"credential.helper={scripts.CREDENTIAL_HELPER} GIT_TOKEN bot" in words


def test_clone_script_checks_out_a_pinned_ref_over_the_specs() -> None:
    repo = Repo(url="https://h/o/r.git", ref="main")
    assert "checkout --quiet main" in scripts.clone_script(repo)
    pinned = scripts.clone_script(repo, ref="0123abcd" * 5)
    assert f"checkout --quiet {'0123abcd' * 5}" in pinned and "checkout --quiet main" not in pinned
    assert "checkout" not in scripts.clone_script(Repo(url="https://h/o/r.git"))


def dvc_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.lstrip().startswith("dvc ") or " dvc " in line]


def test_dvc_pull_script_with_a_url_remote_adds_the_local_remote_and_endpoint() -> None:
    repo = Repo(url="https://h/o/r.git")
    script = scripts.dvc_pull_script(
        repo, Data(remote="s3://bucket/my store", endpoint="http://minio:9000", paths=["data/raw", "it's"])
    )
    bash_syntax(script)
    assert "dvc remote add --local --force devenv 's3://bucket/my store'" in script
    assert "dvc remote modify --local devenv endpointurl http://minio:9000" in script
    assert "--remote devenv" in script and "for target in data/raw 'it'\"'\"'s'; do" in script


def test_dvc_pull_script_with_a_named_remote_leaves_the_config_alone() -> None:
    script = scripts.dvc_pull_script(Repo(url="https://h/o/r.git"), Data(remote="storage"))
    bash_syntax(script)
    assert "remote add" not in script and "remote modify" not in script
    assert script.rstrip().splitlines()[-1] == "dvc pull --remote storage"  # no paths: everything
    named_endpoint = scripts.dvc_pull_script(
        Repo(url="https://h/o/r.git"), Data(remote="storage", endpoint="http://minio:9000")
    )
    assert "remote add" not in named_endpoint
    assert "dvc remote modify --local storage endpointurl http://minio:9000" in named_endpoint


def test_dvc_pull_script_with_a_path_remote_adds_it_and_pulls_everything() -> None:
    script = scripts.dvc_pull_script(Repo(url="https://h/o/r.git", path="work"), Data(remote="/srv/dvc store"))
    bash_syntax(script)
    assert "dvc remote add --local --force devenv '/srv/dvc store'" in script
    assert f"cd {HOME_MOUNT}/work" in script
    assert script.rstrip().splitlines()[-1] == "dvc pull --remote devenv"


# ---- scripts, run for real (the home is a temporary folder instead of /home/dev) ---------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def localize(script: str, home: Path, tmp_path: Path, helper: Path | None = None) -> str:
    """The script as it would run in a workspace whose home is `home` (and whose env file is empty)."""
    env_file = tmp_path / "workspace-env.sh"
    env_file.write_text("export DEVENV_SOURCED=1\n")
    script = script.replace(scripts.WORKSPACE_ENV, str(env_file)).replace(HOME_MOUNT, str(home))
    if helper is not None:
        script = script.replace(scripts.CREDENTIAL_HELPER, str(helper))
    assert "/home/dev" not in script and "/opt/devenv" not in script
    return script


def run_script(script: str, home: Path, *, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = git_env({"HOME": str(home), "DVC_NO_ANALYTICS": "1"})
    # this Python's dvc first: pyenv's shims look for their root under HOME, which is the fake home here
    env["PATH"] = path or f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run([BASH, "-c", script], capture_output=True, text=True, env=env, timeout=120, cwd=home)


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare repo at a path with a space and a quote in it; (bare path, first commit, second commit)."""
    work = tmp_path / "work"
    first = make_repo(work, tmp_path / "it's served", "proj", {"README.md": b"one\n"})
    second = commit_files(work, {"README.md": b"two\n"}, "second")
    return tmp_path / "it's served" / "proj.git", first, second


def test_clone_script_clones_once_and_never_again(origin: tuple[Path, str, str], home: Path, tmp_path: Path) -> None:
    bare, _, second = origin
    script = localize(scripts.clone_script(Repo(url=str(bare))), home, tmp_path)
    done = run_script(script, home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(home / "proj", "rev-parse", "HEAD") == second
    assert f"cloned at {second}" in done.stdout
    assert sorted(p.name for p in home.iterdir()) == ["proj"]  # no temporary folder left
    (home / "proj" / "mine.txt").write_text("edit\n")
    again = run_script(script, home)
    assert again.returncode == scripts.CLONE_PRESENT, again.stdout + again.stderr
    assert (home / "proj" / "mine.txt").read_text() == "edit\n"


def test_clone_script_checks_out_the_pinned_commit(origin: tuple[Path, str, str], home: Path, tmp_path: Path) -> None:
    bare, first, _ = origin
    script = localize(scripts.clone_script(Repo(url=str(bare), path="pinned"), ref=first), home, tmp_path)
    done = run_script(script, home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(home / "pinned", "rev-parse", "HEAD") == first
    assert (home / "pinned" / "README.md").read_text() == "one\n"


def test_clone_script_with_a_missing_ref_keeps_nothing(
    origin: tuple[Path, str, str], home: Path, tmp_path: Path
) -> None:
    bare, _, _ = origin
    script = localize(scripts.clone_script(Repo(url=str(bare), ref="no-such-branch")), home, tmp_path)
    done = run_script(script, home)
    assert done.returncode == scripts.CHECKOUT_FAILED, done.stdout + done.stderr
    assert list(home.iterdir()) == []


def test_clone_script_leaves_a_folder_that_is_not_a_clone_alone(
    origin: tuple[Path, str, str], home: Path, tmp_path: Path
) -> None:
    bare, _, _ = origin
    (home / "proj").mkdir()
    (home / "proj" / "precious.txt").write_text("mine\n")
    done = run_script(localize(scripts.clone_script(Repo(url=str(bare))), home, tmp_path), home)
    assert done.returncode == scripts.CLONE_BLOCKED, done.stdout + done.stderr
    assert "holds files but no git clone" in done.stderr
    assert [p.name for p in (home / "proj").iterdir()] == ["precious.txt"]
    (home / "proj" / "precious.txt").unlink()  # an empty folder (a volume mount point) is fine
    assert run_script(localize(scripts.clone_script(Repo(url=str(bare))), home, tmp_path), home).returncode == 0
    assert (home / "proj" / ".git").is_dir()


def test_clone_script_of_a_url_that_is_not_a_repo_fails_with_its_code_and_hint(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    url = f"{tmp_path}/none; touch {marker}; $(touch {marker}).git"
    repo = Repo(url=url, path="proj")
    done = run_script(localize(scripts.clone_script(repo), home, tmp_path), home)
    assert done.returncode == scripts.CLONE_FAILED, done.stdout + done.stderr
    assert not marker.exists()  # the URL was a word, never shell
    assert list(home.iterdir()) == []
    assert _clone_hint(done.stdout + done.stderr, repo) == "check `repo: url:` in devenv.yaml"


@pytest.fixture
def helper(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped credential helper, reading secrets from a temporary folder instead of the tmpfs."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    text = (images_dir() / "workspace" / "git-credential-devenv").read_text()
    assert "/run/devenv/secrets/" in text
    path = tmp_path / "git-credential-devenv"
    path.write_text(text.replace("/run/devenv/secrets/", f"{secrets_dir}/"))
    path.chmod(0o755)
    return path, secrets_dir


def test_clone_over_https_with_the_token_from_the_secret(tmp_path: Path, home: Path, helper: tuple[Path, Path]) -> None:
    helper_path, secrets_dir = helper
    make_repo(tmp_path / "w", tmp_path / "served", "proj", {"a.txt": b"a\n"})
    with GitHttpServer(tmp_path / "served", username="bot", token="tok-123") as server:
        repo = Repo(url=server.url("proj"), token_secret="GIT_TOKEN", username="bot")
        script = localize(scripts.clone_script(repo), home, tmp_path, helper_path)

        missing = run_script(script, home)  # the secret is not set: git is told so, and fails
        assert missing.returncode == scripts.CLONE_FAILED
        assert "devenv secret set GIT_TOKEN" in missing.stdout + missing.stderr
        assert "GIT_TOKEN" in _clone_hint(missing.stdout + missing.stderr, repo)
        assert list(home.iterdir()) == []

        (secrets_dir / "GIT_TOKEN").write_text("wrong")
        wrong = run_script(script, home)
        assert wrong.returncode == scripts.CLONE_FAILED
        assert "Authentication failed" in wrong.stdout + wrong.stderr
        assert "devenv secret set GIT_TOKEN" in _clone_hint(wrong.stdout + wrong.stderr, repo)
        assert list(home.iterdir()) == [] and server.authorized_requests == 0

        (secrets_dir / "GIT_TOKEN").write_text("tok-123")
        right = run_script(script, home)
        assert right.returncode == 0, right.stdout + right.stderr
        assert server.authorized_requests > 0
    assert (home / "proj" / "a.txt").read_text() == "a\n"
    config = (home / "proj" / ".git" / "config").read_text()
    assert "tok-123" not in config and "GIT_TOKEN bot" in config  # the helper is kept, never the token


def stub_dvc(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose `dvc` records its arguments (one call a line, words joined by |) and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "dvc.log"
    (bin_dir / "dvc").write_text(f'#!/bin/sh\n(IFS="|"; echo "$*") >> {log}\n')
    (bin_dir / "dvc").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", log


def test_dvc_pull_script_pulls_outputs_by_name_and_folders_recursively(home: Path, tmp_path: Path) -> None:
    path, log = stub_dvc(tmp_path)
    clone = home / "proj"
    (clone / "data" / "raw").mkdir(parents=True)  # a folder of .dvc files: pulled with --recursive
    (clone / "images").mkdir()  # a folder that is itself an output (images.dvc): pulled by name
    (clone / "images.dvc").write_text(FOLDER)
    data = Data(
        remote="s3://bucket/store", endpoint="http://minio:9000", paths=["data/raw", "images", "model file.pkl"]
    )
    script = localize(scripts.dvc_pull_script(Repo(url="https://h/o/proj.git"), data), home, tmp_path)
    done = run_script(script, home, path=path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().splitlines() == [
        "remote|add|--local|--force|devenv|s3://bucket/store",
        "remote|modify|--local|devenv|endpointurl|http://minio:9000",
        "pull|--remote|devenv|images|model file.pkl",
        "pull|--remote|devenv|--recursive|data/raw",
    ]


def test_dvc_pull_script_without_a_clone_says_so(home: Path, tmp_path: Path) -> None:
    path, log = stub_dvc(tmp_path)
    script = localize(scripts.dvc_pull_script(Repo(url="https://h/o/proj.git"), Data(remote="storage")), home, tmp_path)
    done = run_script(script, home, path=path)
    assert done.returncode == scripts.DATA_NO_REPO
    assert "no clone" in done.stderr and not log.exists()


def test_dvc_pull_script_passes_a_failed_pulls_code_on(home: Path, tmp_path: Path) -> None:
    path, log = stub_dvc(tmp_path)
    (tmp_path / "bin" / "dvc").write_text(f'#!/bin/sh\necho "$*" >> {log}\n[ "$1" = pull ] && exit 7\nexit 0\n')
    (home / "proj" / "data").mkdir(parents=True)
    data = Data(remote="storage", paths=["data", "model.pkl"])
    script = localize(scripts.dvc_pull_script(Repo(url="https://h/o/proj.git"), data), home, tmp_path)
    done = run_script(script, home, path=path)
    assert done.returncode == 7
    assert len(log.read_text().splitlines()) == 2  # the second pull still ran


@pytest.fixture
def dvc_origin(tmp_path: Path) -> Iterator[tuple[Path, Path, str, dict[str, bytes]]]:
    """A DVC repo (data pushed to a directory remote) and its bare copy: (bare, remote, commit, data)."""
    data = {
        "data/train.csv": b"x,y\n" + b"".join(f"{i},{i * i}\n".encode() for i in range(200)),
        "data/labels.txt": b"a\nb\n",
    }
    work = tmp_path / "dvc-work"
    made = make_dvc_repo(work, data, remote_url=str(tmp_path / "dvc remote"))
    bare = tmp_path / "served" / "proj.git"
    bare.parent.mkdir()
    git(tmp_path, "clone", "--quiet", "--bare", str(work), str(bare))
    yield bare, tmp_path / "dvc remote", made.commit, data


def run_facts(repo_dir: Path, home: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", scripts.FACTS_PY, str(repo_dir), str(home)],
        capture_output=True,
        text=True,
        env=git_env({"HOME": str(home)}),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_clone_then_pull_from_a_directory_remote_then_read_the_facts(
    dvc_origin: tuple[Path, Path, str, dict[str, bytes]], home: Path, tmp_path: Path
) -> None:
    """The scripts and FACTS_PY for real (git, dvc, python): the data arrives, the facts pin it."""
    bare, remote, commit, data = dvc_origin
    repo = Repo(url=str(bare))
    spec_data = Data(remote=str(remote), paths=["data"])
    assert run_script(localize(scripts.clone_script(repo), home, tmp_path), home).returncode == 0
    clone = home / "proj"
    assert not (clone / "data" / "train.csv").exists()  # git has only the .dvc files
    pulled = run_script(localize(scripts.dvc_pull_script(repo, spec_data), home, tmp_path), home)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    for relative, content in data.items():
        assert (clone / relative).read_bytes() == content

    raw = run_facts(clone, home)
    facts = parse_facts(json.dumps(raw))
    assert facts.repo is not None and facts.repo.commit == commit
    assert facts.repo.branch == "main" and facts.repo.dirty is False and facts.repo.diff_hash is None
    assert facts.repo.remote == str(bare)
    assert facts.data_files == {relative: hashlib.md5(content).hexdigest() for relative, content in data.items()}
    clean_hash = facts.data_hash
    assert clean_hash is not None
    assert ".dvc/config.local" not in git(clone, "status", "--porcelain")  # the local remote is never committed

    (clone / "README.md").write_text("edited\n")
    dirty = parse_facts(json.dumps(run_facts(clone, home))).repo
    assert dirty is not None and dirty.dirty and dirty.changes == 1 and dirty.diff_hash
    (clone / "notes.txt").write_text("new\n")
    untracked = parse_facts(json.dumps(run_facts(clone, home))).repo
    assert untracked is not None and untracked.changes == 2 and untracked.diff_hash != dirty.diff_hash
    assert parse_facts(json.dumps(run_facts(clone, home))).data_hash == clean_hash  # code edits: same data

    run_dir = home / "wandb" / "run-20240101_000000-ab12cd34"
    run_dir.mkdir(parents=True)
    assert run_facts(clone, home)["wandb_runs"] == ["ab12cd34"]


def test_facts_outside_a_clone_are_empty(home: Path) -> None:
    raw = run_facts(home / "nothing-here", home)
    assert raw == {"repo": None, "dvc_files": {}, "wandb_runs": []}
    facts = parse_facts(json.dumps(raw))
    assert facts.repo is None and facts.data_hash is None


# ---- env files ---------------------------------------------------------------------------------

TRICKY = [
    "plain",
    "",
    "it's",
    'say "hi"',
    "$HOME and `id` and $(id)",
    "a;b|c&d>e<f",
    "back\\slash",
    "two\nlines\n",
    "tab\there",
    "ünïcødé ✓",
    "*",
    "-n",
    "!x",
]


@pytest.mark.parametrize("value", TRICKY)
def test_exports_give_back_the_exact_value_in_bash(value: str, tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_bytes(exports({"X": value, "OTHER": "o"}))
    done = subprocess.run([BASH, "-c", '. "$1"; printf %s "$X"', "bash", str(path)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == value
    sh = subprocess.run(["sh", "-c", '. "$1"; printf %s "$X"', "sh", str(path)], capture_output=True, timeout=30)
    assert sh.stdout.decode() == value  # workspace-env.sh is POSIX sh: dash must read it too


def test_exports_skip_none_and_sort() -> None:
    assert exports({"B": "2", "A": "1", "C": None}) == b"export A=1\nexport B=2\n"
    assert exports({}) == b""


def test_secret_files_are_one_per_secret_and_the_env_file() -> None:
    files = secret_files({"GIT_TOKEN": "t0k", "API_SECRET": "a b"})
    assert set(files) == {"GIT_TOKEN", "API_SECRET", SECRETS_ENV_NAME}
    assert files["GIT_TOKEN"] == b"t0k" and files["API_SECRET"] == b"a b"  # exact: no newline added
    assert files[SECRETS_ENV_NAME] == b"export API_SECRET='a b'\nexport GIT_TOKEN=t0k\n"
    assert secret_files({}) == {SECRETS_ENV_NAME: b""}


def sourced(body: bytes, tmp_path: Path, *names: str) -> dict[str, str | None]:
    path = tmp_path / "workspace.env"
    path.write_bytes(body)
    script = '. "$1"; ' + "; ".join(
        f'if [ -n "${{{name}+x}}" ]; then printf "%s=%s\\0" {name} "${name}"; fi' for name in names
    )
    done = subprocess.run(
        [BASH, "-c", script, "bash", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    found = dict(item.split("=", 1) for item in done.stdout.split("\0") if item)
    return {name: found.get(name) for name in names}


NAMES = (
    "DEVENV_IMAGE_HASH",
    "DEVENV_LOCK_HASH",
    "DEVENV_DATA_HASH",
    "DEVENV_REPO_DIR",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
)


def test_workspace_env_names_the_repo_and_wandb_only_when_the_spec_has_them(tmp_path: Path) -> None:
    full = Spec.model_validate(
        {
            "name": "proj",
            "repo": {"url": "git@h:o/vision.git"},
            "tracking": {"wandb": {"project": "exp one", "entity": "team"}},
        }
    )
    body = workspace_env(full, image_hash="i" * 64, lock_hash="l" * 64, base_digest="sha256:b", data_hash="d" * 64)
    assert sourced(body, tmp_path, *NAMES) == {
        "DEVENV_IMAGE_HASH": "i" * 64,
        "DEVENV_LOCK_HASH": "l" * 64,
        "DEVENV_DATA_HASH": "d" * 64,
        "DEVENV_REPO_DIR": f"{HOME_MOUNT}/vision",
        "WANDB_PROJECT": "exp one",
        "WANDB_ENTITY": "team",
    }
    no_entity = Spec.model_validate({"name": "proj", "tracking": {"wandb": {"project": "exp"}}})
    got = sourced(
        workspace_env(no_entity, image_hash="i", lock_hash=None, base_digest=None, data_hash=None), tmp_path, *NAMES
    )
    assert got == {
        "DEVENV_IMAGE_HASH": "i",
        "DEVENV_LOCK_HASH": None,
        "DEVENV_DATA_HASH": None,
        "DEVENV_REPO_DIR": None,
        "WANDB_PROJECT": "exp",
        "WANDB_ENTITY": None,
    }
    plain = workspace_env(
        Spec.model_validate({"name": "proj"}), image_hash="i", lock_hash="l", base_digest=None, data_hash=None
    )
    assert b"DEVENV_REPO_DIR" not in plain and b"WANDB" not in plain
    assert b"DEVENV_REPO_DIR" not in workspace_env(
        None, image_hash="i", lock_hash=None, base_digest=None, data_hash=None
    )


def test_workspace_env_holds_no_secret_name_or_value() -> None:
    spec = Spec.model_validate(
        {"name": "proj", "repo": {"url": "https://h/o/r.git", "token_secret": "GIT_TOKEN"}, "secrets": ["API_SECRET"]}
    )
    body = workspace_env(spec, image_hash="i", lock_hash="l", base_digest="b", data_hash=None)
    assert b"GIT_TOKEN" not in body and b"API_SECRET" not in body


# ---- hints -------------------------------------------------------------------------------------

TOKEN_REPO = Repo(url="https://h/o/r.git", token_secret="GIT_TOKEN")
OPEN_REPO = Repo(url="https://h/o/r.git")
# What git 2.47 prints for each failure (captured from real runs).
AUTH_FAILED = (
    "Cloning into '/home/dev/.devenv-clone-r'...\nremote: authentication required\n"
    "fatal: Authentication failed for 'https://h/o/r.git/'\n"
)
NO_USERNAME = "fatal: could not read Username for 'https://h': terminal prompts disabled\n"
NO_HOST = (
    "Cloning into 'r'...\nfatal: unable to access 'https://nohost.invalid/o/r.git/': Could not resolve host: "
    "nohost.invalid\n"
)
NO_PORT = (
    "fatal: unable to access 'http://127.0.0.1:9/x.git/': Failed to connect to 127.0.0.1 port 9 after 0 ms: "
    "Couldn't connect to server\n"
)
NOT_FOUND = "remote: Repository not found.\nfatal: repository 'https://github.com/o/r.git/' not found\n"
NO_PATH = "fatal: repository '/srv/none.git' does not exist\n"
NOT_A_REPO = "fatal: '/srv/x' does not appear to be a git repository\nfatal: Could not read from remote repository.\n"


@pytest.mark.parametrize("output", [AUTH_FAILED, NO_USERNAME])
def test_clone_hint_for_credentials(output: str) -> None:
    assert "devenv secret set GIT_TOKEN" in _clone_hint(output, TOKEN_REPO)
    assert "token_secret" in _clone_hint(output, OPEN_REPO)


@pytest.mark.parametrize("output", [NO_HOST, NO_PORT])
def test_clone_hint_for_an_unreachable_host(output: str) -> None:
    assert "cannot reach the repository's host" in _clone_hint(output, TOKEN_REPO)


def test_clone_hint_for_an_unreachable_host_whose_url_holds_403() -> None:
    """'401'/'403' must mean an HTTP status, not any digits in the URL (a repo named exp-1403, port 4030)."""
    output = NO_HOST.replace("/o/r.git", "/team/exp-1403.git")
    assert "cannot reach the repository's host" in _clone_hint(output, TOKEN_REPO)


@pytest.mark.parametrize("output", [NOT_FOUND, NO_PATH, NOT_A_REPO])
def test_clone_hint_for_a_wrong_url(output: str) -> None:
    assert _clone_hint(output, TOKEN_REPO) == "check `repo: url:` in devenv.yaml"


def test_clone_hint_otherwise_says_how_to_retry() -> None:
    assert "devenv data pull" in _clone_hint("fatal: early EOF\n", TOKEN_REPO)


S3 = Data(remote="s3://bucket/store", endpoint="http://minio:9000")
# What dvc 3.67 prints for each failure (captured from real runs against directory and S3 remotes).
DVC_REFUSED = (
    "ERROR: failed to connect to s3 (bucket/store/files/md5) - Could not connect to the endpoint URL: "
    '"http://127.0.0.1:9/bucket/store/files/md5"\nERROR: failed to pull data from the cloud - '
    "2 files failed to download\n"
)
DVC_NO_CREDENTIALS = (
    "ERROR: failed to connect to s3 (bucket/store/files/md5) - Unable to locate credentials\n"
    "ERROR: failed to pull data from the cloud - 2 files failed to download\n"
)
DVC_FORBIDDEN = "ERROR: unexpected error - An error occurred (403) when calling the HeadObject operation: Forbidden\n"
DVC_BAD_KEY = "ERROR: An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2 operation\n"
DVC_NO_OUTPUT = (
    "WARNING: failed to collect 'workspace', skipping\nERROR: failed to pull data from the cloud - "
    "'data/nope.csv' does not exist as an output or a stage name in 'dvc.yaml': 'dvc.yaml' does not "
    "exist\n"
)
DVC_MISSING_CACHE = (
    "WARNING: Some of the cache files do not exist neither locally nor on remote. Missing cache "
    "files:\nmd5: 401b30e3b8b5d629635a5c613cdb7919\nEverything is up to date.\nERROR: failed to "
    "pull data from the cloud - Checkout failed for following targets:\ndata/train.csv\nIs your "
    "cache up to date?\n<https://error.dvc.org/missing-files>\n"
)


def test_data_hint_for_a_remote_that_does_not_answer() -> None:
    hint = _data_hint(DVC_REFUSED, S3)
    assert "does not answer" in hint and "http://minio:9000" in hint
    assert "does not answer" in _data_hint("ConnectionRefusedError: [Errno 111] Connection refused", S3)
    assert "s3://bucket/store" in _data_hint("Could not connect to the endpoint URL", Data(remote="s3://bucket/store"))


@pytest.mark.parametrize("output", [DVC_FORBIDDEN, DVC_BAD_KEY])
def test_data_hint_for_refused_credentials(output: str) -> None:
    assert "credentials" in _data_hint(output, S3) and "devenv secret set" in _data_hint(output, S3)


def test_data_hint_for_missing_credentials() -> None:
    """What dvc prints when no AWS key reached it: the hint must point at the secrets."""
    assert "devenv secret set" in _data_hint(DVC_NO_CREDENTIALS, S3)


def test_data_hint_for_a_path_that_is_not_an_output() -> None:
    assert "data: paths:" in _data_hint(DVC_NO_OUTPUT, S3)


def test_data_hint_for_data_missing_from_the_remote() -> None:
    assert "dvc push" in _data_hint(DVC_MISSING_CACHE, S3)


def test_data_hint_otherwise_points_at_the_spec() -> None:
    assert _data_hint("ERROR: something else\n", S3) == "fix `data:` in devenv.yaml, then `devenv data pull`"
