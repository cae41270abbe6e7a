"""The signed git webhook: 401 without the right signature (nothing started); a push changing a
devenv.lock prebuilds that project's image from a real git clone, so the next `up` is warm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devenv.build.project import checked_lock, open_project, project_plan
from devenv.daemon.services.access import Caller
from devenv.daemon.services.hooks import SECRET_NAME, sign
from devenv.testing.daemon import FakeDaemon, fake_daemon
from devenv.testing.fake_images import FAKE_ARCH, write_fake_lock
from devenv.testing.projects import copy_template
from harness.git_server import git

SECRET = "hook-secret-9f1c"


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


def hook(api: TestClient, payload: dict, *, event: str = "push", secret: str | None = SECRET) -> object:
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return api.post("/v1/hooks/git", content=body, headers=headers)


def repo_with_project(folder: Path) -> tuple[Path, str]:
    spec = copy_template("minimal", folder / "ml", project_name="hooked")
    write_fake_lock(open_project(spec))
    git(folder, "init", "--quiet", "--initial-branch=main")
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "-m", "lock")
    return spec, git(folder, "rev-parse", "HEAD")


def push_payload(folder: Path, commit: str, changed: list[str]) -> dict:
    return {
        "ref": "refs/heads/main",
        "after": commit,
        "repository": {"clone_url": str(folder)},
        "commits": [{"id": commit, "added": [], "modified": changed, "removed": []}],
    }


def test_without_a_secret_or_with_a_bad_signature_it_is_401_and_starts_nothing(
    fake: FakeDaemon, tmp_path: Path
) -> None:
    api = TestClient(fake.app)
    payload = push_payload(tmp_path, "0" * 40, ["ml/devenv.lock"])
    off = hook(api, payload)
    assert off.status_code == 401 and "DEVENV_WEBHOOK_SECRET" in off.json()["message"]
    fake.daemon.services.secrets.set(Caller("root", admin=True), SECRET_NAME, SECRET, team=True)
    for secret in ("wrong", None):
        refused = hook(api, payload, secret=secret)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    assert fake.daemon.services.hooks.threads == []
    assert SECRET not in json.dumps(api.get("/v1/events", headers=fake.headers).json())


def test_a_push_that_changes_the_lock_prebuilds_and_the_next_up_is_warm(fake: FakeDaemon, tmp_path: Path) -> None:
    fake.daemon.services.secrets.set(Caller("root", admin=True), SECRET_NAME, SECRET, team=True)
    api = TestClient(fake.app)
    assert hook(api, {"zen": "hi"}, event="ping").json() == {"ok": True}
    repo = tmp_path / "repo"
    spec, commit = repo_with_project(repo)
    quiet = hook(api, push_payload(repo, commit, ["ml/train.py"]))
    assert quiet.status_code == 200 and quiet.json()["prebuild"] is None

    started = hook(api, push_payload(repo, commit, ["ml/devenv.lock", "ml/train.py"]))
    assert started.status_code == 200 and started.json() == {
        "prebuild": "started",
        "commit": commit,
        "locks": ["ml/devenv.lock"],
    }
    for thread in fake.daemon.services.hooks.threads:
        thread.join(30)
    project = open_project(spec)
    tag = project_plan(project, checked_lock(project, FAKE_ARCH), provenance=False).tag
    assert tag in (fake.backend.images or set())  # built from the daemon's own clone at that commit
    messages = [event["message"] for event in api.get("/v1/events", headers=fake.headers).json()["items"]]
    assert any(message.startswith(f"prebuilt {tag}") for message in messages), messages

    bad = hook(api, push_payload(repo, "f" * 40, ["ml/devenv.lock"]))  # a commit the repo does not have
    assert bad.status_code == 200
    for thread in fake.daemon.services.hooks.threads:
        thread.join(30)
    messages = [event["message"] for event in api.get("/v1/events", headers=fake.headers).json()["items"]]
    assert any("failed" in message and "ffffffffffff" in message for message in messages), messages
