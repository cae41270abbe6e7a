"""Code and data wired in, for real: a workspace clones its repo from a git server with a token from
a secret, pulls its DVC data from a directory remote and from S3, reports it in `devenv status`, and
a snapshot recreates it at exactly those versions. Bad input never stops the workspace or loses data.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from harness.devenvd import Devenvd
from harness.dvc_repo import dvc
from harness.git_server import commit_files
from harness.s3_server import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
from harness.versioning_world import GIT_TOKEN, VersioningWorld

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def devenvd(devenvd_allowing_world: Devenvd) -> Devenvd:
    return devenvd_allowing_world


def set_secrets(devenvd: Devenvd, **values: str) -> None:
    for name, value in values.items():
        devenvd.cli("secret", "set", name, input=value + "\n", check=True)


def in_workspace(client: docker.DockerClient, name: str, script: str) -> str:
    container = client.containers.get(f"devenv-{name}")
    code, output = container.exec_run(["bash", "-lc", script], user="dev", workdir="/home/dev")
    assert code == 0, output.decode(errors="replace")
    return output.decode().strip()


def checksums(client: docker.DockerClient, name: str, folder: str, files: list[str]) -> dict[str, str]:
    listing = in_workspace(client, name, f"cd {folder} && sha256sum {' '.join(files)}")
    return {path: digest for digest, path in (line.split() for line in listing.splitlines())}


def status(devenvd: Devenvd, name: str) -> dict:
    return json.loads(devenvd.cli("status", name, "--json", check=True).stdout)


def test_up_clones_with_the_token_secret_and_pulls_data_from_a_directory_remote(
    devenvd: Devenvd, world: VersioningWorld, client: docker.DockerClient, tmp_path: Path
) -> None:
    set_secrets(devenvd, GIT_TOKEN=GIT_TOKEN, API_SECRET="api-value-1", WANDB_API_KEY="0" * 40)
    project = world.project(world.dir_project, tmp_path / "p", "vd-one")
    before = world.git.authorized_requests
    up = devenvd.cli("up", cwd=project, check=True)
    assert "cloned" in up.stderr and "pulled DVC data" in up.stderr, up.stderr
    assert world.git.authorized_requests > before  # the credential helper handed git the token

    head = in_workspace(client, "vd-one", "git -C proj-dir rev-parse HEAD")
    assert head == world.dir_repo.commit
    assert checksums(client, "vd-one", "proj-dir", sorted(world.dir_repo.files)) == world.dir_repo.files
    assert in_workspace(client, "vd-one", "git -C proj-dir config --get credential.helper").endswith(
        "git-credential-devenv GIT_TOKEN git"
    )  # the token itself is not in the repo's config
    assert GIT_TOKEN not in in_workspace(client, "vd-one", "cat proj-dir/.git/config; ls -a ~")
    logs = devenvd.cli("logs", "vd-one", check=True).stdout
    assert "devenv: cloning" in logs and "devenv: pulling DVC data" in logs  # the steps' output, in the log too

    shown = status(devenvd, "vd-one")
    assert shown["repo"]["git"]["commit"] == world.dir_repo.commit
    assert shown["repo"]["git"]["branch"] == "main" and shown["repo"]["git"]["dirty"] is False
    assert shown["data"]["status"] == "pulled" and shown["data"]["ok"] is True
    assert set(shown["data"]["files"]) == {"data/train.csv", "data/labels.txt"}
    assert shown["secrets"]["missing"] == []
    text = devenvd.cli("status", "vd-one", check=True).stdout
    assert f"commit {world.dir_repo.commit[:12]}  clean" in text and "branch main" in text

    # edit a tracked file: status says dirty; a later start does not clone again or touch the edit
    in_workspace(client, "vd-one", "echo '# mine' >> proj-dir/train.py")
    assert status(devenvd, "vd-one")["repo"]["git"]["dirty"] is True
    devenvd.cli("stop", "vd-one", check=True)
    again = devenvd.cli("start", "vd-one", check=True)
    assert "cloned" not in again.stderr
    assert in_workspace(client, "vd-one", "tail -1 proj-dir/train.py") == "# mine"
    events = devenvd.cli("events", "vd-one", check=True).stdout
    assert events.count("cloned http") == 1 and events.count("pulled DVC data") == 1


def test_data_from_an_s3_remote_with_credentials_from_secrets(
    devenvd: Devenvd, world: VersioningWorld, client: docker.DockerClient, tmp_path: Path
) -> None:
    set_secrets(
        devenvd,
        GIT_TOKEN=GIT_TOKEN,
        API_SECRET="x",
        WANDB_API_KEY="0" * 40,
        AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY,
    )
    project = world.project(world.s3_project, tmp_path / "p", "vs-one")
    devenvd.cli("up", cwd=project, check=True)
    assert checksums(client, "vs-one", "proj-s3", sorted(world.s3_repo.files)) == world.s3_repo.files
    # `devenv data pull` repeats it: a deleted file comes back
    in_workspace(client, "vs-one", "rm proj-s3/data/labels.txt")
    pulled = devenvd.cli("data", "pull", "vs-one", check=True)
    assert "data pulled" in pulled.stdout
    assert checksums(client, "vs-one", "proj-s3", sorted(world.s3_repo.files)) == world.s3_repo.files


def test_a_snapshot_recreates_the_same_image_commit_and_data(
    devenvd: Devenvd, world: VersioningWorld, client: docker.DockerClient, tmp_path: Path
) -> None:
    set_secrets(devenvd, GIT_TOKEN=GIT_TOKEN, API_SECRET="x", WANDB_API_KEY="0" * 40)
    repo = world.new_dir_repo("proj-snap")  # this test moves its repo on: its own, not the shared one
    project = world.project(
        world.dir_project,
        tmp_path / "p",
        "vd-snap",
        replace={world.dir_repo.url: repo.url, "repo:\n": "repo:\n  path: proj-dir\n"},
    )
    devenvd.cli("up", cwd=project, check=True)
    original = checksums(client, "vd-snap", "proj-dir", sorted(repo.files))
    snapshot_id = devenvd.cli("snapshot", "vd-snap", "-m", "baseline", check=True).stdout.strip()
    record = json.loads(devenvd.cli("snapshots", "vd-snap", "--json", check=True).stdout)[0]
    assert record["id"] == snapshot_id and record["note"] == "baseline"
    assert record["repo"]["commit"] == repo.commit and record["repo"]["dirty"] is False
    assert record["data"]["hash"] and set(record["data"]["files"]) == {"data/train.csv", "data/labels.txt"}
    assert record["lock_hash"] and record["base_digest"].startswith("sha256:")

    # the repo moves on: new data and a new commit, pushed; a plain clone would now get those
    (repo.work / "data" / "labels.txt").write_bytes(b"relabelled\n" * 50)
    dvc(repo.work, "add", "--quiet", "data/labels.txt")
    dvc(repo.work, "push", "--quiet")
    assert commit_files(repo.work, {}, "relabel") != repo.commit

    made = devenvd.cli("up", "--from-snapshot", snapshot_id, "--name", "vd-again", check=True)
    assert "vd-again: running" in made.stdout
    assert in_workspace(client, "vd-again", "git -C proj-dir rev-parse HEAD") == repo.commit
    assert checksums(client, "vd-again", "proj-dir", sorted(repo.files)) == original == repo.files
    again = json.loads(devenvd.cli("snapshot", "vd-again", "--json", check=True).stdout)
    assert again["image_hash"] == record["image_hash"] and again["lock_hash"] == record["lock_hash"]
    assert again["data"]["hash"] == record["data"]["hash"]
    assert status(devenvd, "vd-again")["pins"] == {"snapshot": snapshot_id, "commit": repo.commit}


def test_bad_repo_and_missing_secret_leave_it_running_with_the_fix_named(
    devenvd: Devenvd, world: VersioningWorld, client: docker.DockerClient, tmp_path: Path
) -> None:
    set_secrets(devenvd, API_SECRET="x", WANDB_API_KEY="0" * 40)  # no GIT_TOKEN yet
    project = world.project(world.dir_project, tmp_path / "p", "vd-bad")
    up = devenvd.cli("up", cwd=project)
    assert up.returncode == 0 and "vd-bad: running" in up.stdout, up.stderr
    assert "secret GIT_TOKEN is not set" in up.stderr and "devenv secret set GIT_TOKEN" in up.stderr
    assert "could not clone" in up.stderr and "Traceback" not in up.stderr
    shown = status(devenvd, "vd-bad")
    assert shown["secrets"]["missing"] == ["GIT_TOKEN"]
    assert shown["repo"]["status"] == "failed" and "GIT_TOKEN" in shown["repo"]["hint"]
    assert shown["data"]["ok"] is False and "repo step failed first" in shown["data"]["message"]
    text = devenvd.cli("status", "vd-bad", check=True).stdout
    assert "MISSING: GIT_TOKEN" in text and "FAILED: could not clone" in text
    assert "proj-dir" not in in_workspace(client, "vd-bad", "ls -A ~")  # a failed clone leaves nothing half-made

    # the fix the messages name: set the secret, restart (secrets are placed at start), pull
    set_secrets(devenvd, GIT_TOKEN=GIT_TOKEN)
    devenvd.cli("stop", "vd-bad", check=True)
    restarted = devenvd.cli("start", "vd-bad", check=True)
    assert "cloned" in restarted.stderr and "pulled DVC data" in restarted.stderr
    assert checksums(client, "vd-bad", "proj-dir", sorted(world.dir_repo.files)) == world.dir_repo.files

    # a folder where the clone goes that is not a clone: left exactly as it is
    in_workspace(client, "vd-bad", "rm -rf proj-dir/.git && echo precious > proj-dir/mine.txt")
    blocked = devenvd.cli("data", "pull", "vd-bad")
    assert blocked.returncode == 1 and "no data pulled" in blocked.stderr
    assert in_workspace(client, "vd-bad", "cat proj-dir/mine.txt") == "precious"
    assert "holds files but no git clone" in status(devenvd, "vd-bad")["repo"]["message"]


def test_remotes_that_do_not_answer_or_are_missing_leave_it_running(
    devenvd: Devenvd, world: VersioningWorld, tmp_path: Path
) -> None:
    set_secrets(
        devenvd,
        GIT_TOKEN=GIT_TOKEN,
        API_SECRET="x",
        WANDB_API_KEY="0" * 40,
        AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY,
    )
    closed = world.project(
        world.s3_project, tmp_path / "s3", "vs-closed", replace={f":{world.s3.port}": ":9"}
    )  # the discard port: nothing answers there
    up = devenvd.cli("up", cwd=closed)
    assert up.returncode == 0 and "vs-closed: running" in up.stdout, up.stderr
    data = status(devenvd, "vs-closed")["data"]
    assert data["ok"] is False and "does not answer" in data["hint"], data
    assert status(devenvd, "vs-closed")["repo"]["ok"] is True  # the clone is there; only the data is not

    gone = world.project(
        world.dir_project,
        tmp_path / "dir",
        "vd-gone",
        replace={str(world.remote_dir): str(world.root / "no-such-remote")},
    )
    up = devenvd.cli("up", cwd=gone)
    assert up.returncode == 0 and "vd-gone: running" in up.stdout, up.stderr
    assert "a folder to mount is missing on the engine's host" in up.stderr
    assert status(devenvd, "vd-gone")["data"]["ok"] is False
