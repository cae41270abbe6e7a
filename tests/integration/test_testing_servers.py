"""The test servers of the harness (tests/harness) work for real: git over smart HTTP with a token, DVC remotes
(a directory and S3), and both reachable from a container through host.docker.internal."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.lock.models import BaseImage
from devenv.testing.network import ENGINE_HOST_MAPPING, ENGINE_HOST_NAME, engine_host_address
from harness.dvc_repo import dvc, make_dvc_repo, sha256_of
from harness.git_server import GitHttpServer, commit_files, git, git_env, make_repo
from harness.s3_server import CREDENTIALS_ENV, S3Server

USER, TOKEN = "dev", "s3cret-token"
DATA = {"data/train.csv": b"x,y\n1,2\n3,4\n", "data/test.csv": b"x,y\n5,6\n"}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git on the host")


def helper_script(folder: Path, token: str) -> Path:
    """A git credential helper that answers `get` with a token read from a file, as workspaces do."""
    (folder / "token").write_text(token)
    script = folder / "credential-helper"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = get ] || exit 0\nprintf "username={USER}\\npassword=%s\\n" "$(cat {folder / "token"})"\n'
    )
    script.chmod(0o755)
    return script


def clone(url: str, target: Path, helper: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", f"credential.helper={helper}", "clone", "--quiet", url, str(target)],
        env=git_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(tmp_path / "bare", username=USER, token=TOKEN) as server:
        yield server


def test_clone_with_the_token_from_a_credential_helper(tmp_path: Path, git_server: GitHttpServer) -> None:
    sha = make_repo(tmp_path / "work", git_server.root, "proj", {"README.md": b"hi\n", "src/a.py": b"x = 1\n"})
    assert sha == make_repo(
        tmp_path / "again", tmp_path / "bare2", "proj", {"README.md": b"hi\n", "src/a.py": b"x = 1\n"}
    )
    (tmp_path / "h").mkdir()
    done = clone(git_server.url("proj"), tmp_path / "clone", helper_script(tmp_path / "h", TOKEN))
    assert done.returncode == 0, done.stderr
    assert git(tmp_path / "clone", "rev-parse", "HEAD") == sha
    assert (tmp_path / "clone" / "src" / "a.py").read_bytes() == b"x = 1\n"
    assert any(not r.authorized for r in git_server.requests)  # git asked the helper after a 401
    assert git_server.authorized_requests >= 2 and not git_server.errors

    second = commit_files(tmp_path / "work", {"src/a.py": b"x = 2\n"}, "second")
    git(tmp_path / "clone", "-c", f"credential.helper={tmp_path / 'h' / 'credential-helper'}", "pull", "--quiet")
    assert git(tmp_path / "clone", "rev-parse", "HEAD") == second


def test_push_over_http(tmp_path: Path, git_server: GitHttpServer) -> None:
    make_repo(tmp_path / "work", git_server.root, "proj", {"a": b"1\n"})
    (tmp_path / "h").mkdir()
    helper = helper_script(tmp_path / "h", TOKEN)
    assert clone(git_server.url("proj"), tmp_path / "clone", helper).returncode == 0
    (tmp_path / "clone" / "big.bin").write_bytes(os.urandom(2 << 20))  # a pack over http.postBuffer: chunked
    git(tmp_path / "clone", "add", "big.bin")
    git(tmp_path / "clone", "commit", "--quiet", "-m", "big")
    for number in range(40):  # annotated: one `want` each, so a fetch's request body is big enough to gzip
        git(tmp_path / "clone", "tag", "-m", "t", f"v{number}")
    git(tmp_path / "clone", "-c", f"credential.helper={helper}", "push", "--quiet", "--follow-tags", "origin", "main")
    assert git(git_server.root / "proj.git", "rev-parse", "main") == git(tmp_path / "clone", "rev-parse", "HEAD")
    assert any(r.chunked and r.path.endswith("git-receive-pack") for r in git_server.requests)

    assert clone(git_server.url("proj"), tmp_path / "again", helper).returncode == 0
    assert (tmp_path / "again" / "big.bin").read_bytes() == (tmp_path / "clone" / "big.bin").read_bytes()
    assert git(tmp_path / "again", "tag").split() == sorted(f"v{number}" for number in range(40))
    assert any(r.content_encoding == "gzip" for r in git_server.requests), git_server.requests
    assert not git_server.errors


def test_a_wrong_token_is_an_authentication_error(tmp_path: Path, git_server: GitHttpServer) -> None:
    make_repo(tmp_path / "work", git_server.root, "proj", {"a": b"1\n"})
    (tmp_path / "h").mkdir()
    done = clone(git_server.url("proj"), tmp_path / "clone", helper_script(tmp_path / "h", "wrong"))
    assert done.returncode != 0
    assert "Authentication failed" in done.stderr
    assert git_server.authorized_requests == 0 and git_server.requests


def pull_into_a_fresh_clone(source: Path, target: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    git(target.parent, "clone", "--quiet", str(source), str(target))
    assert not (target / "data" / "train.csv").exists()
    dvc(target, "pull", "--quiet", env=env)
    return sha256_of(target, list(DATA))


def test_dvc_with_a_directory_remote(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "work", DATA, remote_url=str(tmp_path / "remote"))
    assert any((tmp_path / "remote").rglob("*"))
    assert "data/train.csv" not in git(repo.path, "ls-files").splitlines()
    assert pull_into_a_fresh_clone(repo.path, tmp_path / "clone") == repo.files


def test_dvc_with_an_s3_remote(tmp_path: Path) -> None:
    bucket = f"dvc-{uuid.uuid4().hex[:12]}"
    with S3Server() as s3:
        url = s3.create_bucket(bucket)
        repo = make_dvc_repo(
            tmp_path / "work", DATA, remote_url=f"{url}/cache", remote_config={"endpointurl": s3.endpoint()}, env=s3.env
        )
        config = (repo.path / ".dvc" / "config").read_text()
        assert s3.endpoint() in config and CREDENTIALS_ENV["AWS_SECRET_ACCESS_KEY"] not in config
        keys = [item["Key"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys and all(key.startswith("cache/") for key in keys)
        assert pull_into_a_fresh_clone(repo.path, tmp_path / "clone", env=s3.env) == repo.files


PROBE = """
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("WWW-Authenticate"))
"""


def test_a_container_reaches_both_servers_on_the_engine_host(
    tmp_path: Path, client: docker.DockerClient, cpu_base: BaseImage
) -> None:
    address = engine_host_address(client)
    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    with (
        GitHttpServer(tmp_path / "bare", username=USER, token=TOKEN, host=address) as server,
        S3Server(host=address) as s3,
    ):
        make_repo(tmp_path / "work", server.root, "proj", {"a": b"1\n"})
        s3.create_bucket(bucket)
        git_url = server.url("proj", host=ENGINE_HOST_NAME) + "/info/refs?service=git-upload-pack"
        s3_url = f"{s3.endpoint(ENGINE_HOST_NAME)}/{bucket}"
        resolve = f'import socket; print(socket.gethostbyname("{ENGINE_HOST_NAME}"))'
        script = f"set -e; python3 -c '{resolve}'; python3 -c '{PROBE}' '{git_url}'; python3 -c '{PROBE}' '{s3_url}'"
        output = client.containers.run(
            cpu_base.image, ["sh", "-c", script], extra_hosts=ENGINE_HOST_MAPPING, remove=True, network_mode="bridge"
        ).decode()
    assert output.splitlines() == [address, '401 Basic realm="devenv-tests"', "200"], output
    assert [r.authorized for r in server.requests] == [False]
