"""`devenv promote` through the daemon: git read on the person's machine, the commit's archive uploaded, the
person's registry login (from their docker config) sent with the one request; the real CLI against a fake
daemon on a real socket (a FakeBackend behind it)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from devenv.build.project import open_project
from devenv.promote.credentials import DOCKER_HUB, registry_login, registry_of
from devenv.testing.daemon import FakeDaemon
from devenv.testing.fake_images import write_fake_lock
from devenv.testing.projects import copy_template
from harness.git_server import git
from harness.in_process_cli import cli

PROMOTE = 'promote: {entrypoint: "python app.py"}\nci: {test: "python -c pass"}\n'


@pytest.fixture
def daemon(cli_daemon: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))  # the person's docker config: none yet
    return cli_daemon


def checkout(folder: Path) -> tuple[Path, str]:
    spec = copy_template("minimal", folder, project_name="app")
    spec.write_text(spec.read_text() + PROMOTE)
    write_fake_lock(open_project(spec))
    (folder / "app.py").write_text("print(42)\n")
    git(folder, "init", "--quiet", "--initial-branch=main")
    git(folder, "remote", "add", "origin", "https://bob:t0ken@git.example.com/team/app.git")
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "-m", "first")
    return spec, git(folder, "rev-parse", "HEAD")


def test_the_daemon_gets_the_commits_facts_and_archive_and_the_sbom_comes_back(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec, commit = checkout(tmp_path / "app")
    (spec.parent / "app.py").write_text("print('edited, not committed')\n")
    code, out, err = cli(capsys, "promote", "-f", str(spec), "--sbom", str(tmp_path / "sbom.json"))
    assert code == 0, err
    ((facts, archive, tag, auth),) = daemon.backend.promotions
    assert facts.commit == commit and facts.dirty and facts.source == "https://git.example.com/team/app.git"
    assert "uncommitted" in err and tag is None and auth is None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        handle = tar.extractfile("app.py")
        assert handle is not None and handle.read() == b"print(42)\n"  # the commit's, not the edit
    assert (tmp_path / "sbom.json").read_bytes() == b"{}"  # what the backend made, written here
    assert out.split()[0] == f"devenv/app-prod:{commit[:12]}" and "gate: passed" in err


def test_a_push_carries_the_persons_login_for_that_registry_only(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec, _ = checkout(tmp_path / "app")
    (tmp_path / "docker").mkdir()
    config = {
        "auths": {
            "https://registry.example.com:5000/v1/": {"auth": base64.b64encode(b"ci:pw:with:colons").decode()},
            "other.example.com": {"auth": base64.b64encode(b"no:no").decode()},
        }
    }
    (tmp_path / "docker" / "config.json").write_text(json.dumps(config))
    code, out, err = cli(capsys, "promote", "-f", str(spec), "--to", "registry.example.com:5000/team/app:1")
    assert code == 0, err
    ((_, _, tag, auth),) = daemon.backend.promotions
    assert tag == "registry.example.com:5000/team/app:1"
    assert auth == {"serveraddress": "registry.example.com:5000", "username": "ci", "password": "pw:with:colons"}
    assert out.strip().startswith("registry.example.com:5000/team/app@sha256:") and "pushed 1 layers" in err


def test_refusals_come_before_anything_is_uploaded(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec, _ = checkout(tmp_path / "app")
    spec.write_text(spec.read_text().replace('promote: {entrypoint: "python app.py"}\n', ""))
    code, _, err = cli(capsys, "promote", "-f", str(spec))
    assert code == 2 and "promote:" in err and "Traceback" not in err
    outside = copy_template("minimal", tmp_path / "nogit", project_name="nogit")
    outside.write_text(outside.read_text() + PROMOTE)
    code, _, err = cli(capsys, "promote", "-f", str(outside))
    assert code == 2 and "git repository" in err
    assert daemon.backend.promotions == [] and daemon.backend.calls["build"] == 0


def test_the_registry_is_read_from_the_reference_as_docker_reads_it(tmp_path: Path) -> None:
    assert registry_of("localhost:5000/a/b:1") == "localhost:5000"
    assert registry_of("ghcr.io/team/app:1") == "ghcr.io"
    assert registry_of("team/app:1") == DOCKER_HUB and registry_of("app") == DOCKER_HUB
    config = tmp_path / "config.json"
    assert registry_login("ghcr.io/team/app:1", config) is None  # no config: no login
    config.write_text(json.dumps({"auths": {"ghcr.io": {"identitytoken": "tok"}}}))
    assert registry_login("ghcr.io/team/app:1", config) == {"serveraddress": "ghcr.io", "identitytoken": "tok"}
    assert registry_login("quay.io/team/app:1", config) is None
