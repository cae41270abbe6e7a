"""The git webhook against a real devenvd and engine: a signed push that changes devenv.lock makes
the daemon clone the repo at that commit and build its image, so the next `devenv up` is warm; a
bad signature gets 401 and builds nothing."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from pathlib import Path

import docker
import docker.errors
import httpx

from devenv.daemon.services.hooks import sign
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.git_server import git

SECRET = "it-hook-secret-51d"


def post(devenvd: Devenvd, payload: dict, *, secret: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    transport = httpx.HTTPTransport(uds=str(devenvd.home / "devenvd.sock"))
    with httpx.Client(transport=transport, base_url="http://devenvd") as http:
        return http.post(
            "/v1/hooks/git",
            content=body,
            headers={
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": sign(secret, body),
                "Content-Type": "application/json",
            },
        )


def test_a_signed_push_changing_the_lock_prebuilds_and_up_is_warm(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    devenvd.cli("secret", "set", "DEVENV_WEBHOOK_SECRET", "--team", input=SECRET, check=True)
    repo = tmp_path / "repo"
    name = f"it-hooked-{secrets.token_hex(3)}"  # its own image tag: an engine shared with other runs has others
    project = copy_project(light_image, repo / "svc", name)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "lock it")
    commit = git(repo, "rev-parse", "HEAD")
    tag = f"devenv/{name}:{light_image.image_hash[:16]}"
    payload = {
        "ref": "refs/heads/main",
        "after": commit,
        "repository": {"clone_url": str(repo)},
        "commits": [{"added": ["svc/devenv.lock"], "modified": [], "removed": []}],
    }
    try:
        refused = post(devenvd, payload, secret="not-the-secret")
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        time.sleep(1)
        assert not client.images.list(name=f"devenv/{name}")  # a bad signature built nothing

        started = post(devenvd, payload, secret=SECRET)
        assert started.status_code == 200 and started.json()["prebuild"] == "started"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            events = devenvd.cli("events", check=True).stdout
            if f"prebuilt {tag}" in events or ("prebuild of" in events and "failed" in events):
                break
            time.sleep(1)
        assert f"prebuilt {tag}" in events, events
        assert client.images.get(tag)

        up = devenvd.cli("up", cwd=project, check=True)
        assert f"{name}: running" in up.stdout
        assert f"building devenv/{name}" not in up.stderr, up.stderr  # the image was there: a tag lookup
    finally:
        devenvd.cli("rm", name, timeout=120)  # the container first: an image in use cannot be removed
        for image in client.images.list(name=f"devenv/{name}"):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=True)
