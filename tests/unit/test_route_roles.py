"""Every route of the API, called as every role: what its declared rule allows gets through, the rest is refused.

The routes come from the OpenAPI document (and the app's own route table, for those it hides), so a new
route is checked the day it is added; one without a declared rule cannot even be built into an app.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from devenv.daemon.api.authz import ACCESS_KEY, Rule, check_declared, every_route, route_rule
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.versioning import scripts

ROLES = ("anonymous", "stranger", "jupyter_grantee", "ssh_grantee", "owner", "admin")
ALLOWED: dict[Rule, set[str]] = {
    Rule.ANYONE: set(ROLES),
    Rule.MEMBER: set(ROLES) - {"anonymous"},
    Rule.VIEWER: {"jupyter_grantee", "ssh_grantee", "owner", "admin"},
    Rule.SSH: {"ssh_grantee", "owner"},  # an admin reaches inside only by granting themselves (recorded)
    Rule.JUPYTER: {"jupyter_grantee", "owner"},
    Rule.OWNER: {"owner", "admin"},
    Rule.SNAPSHOT: {"jupyter_grantee", "ssh_grantee", "owner", "admin"},
    Rule.ADMIN: {"admin"},
}
PERSON = {"stranger": "mallory", "jupyter_grantee": "jill", "ssh_grantee": "gus", "owner": "olive", "admin": "ada"}
REFUSED_CODES = {"unauthorized", "forbidden", "snapshot_not_found"}
# Routes whose own check is not a caller: the forge's webhook proves itself with its signature.
SELF_AUTHENTICATED = {("POST", "/v1/hooks/git")}


async def first_answer(app: Any, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """The status of a call, and its body when it is refused: a stream that was let through (events --follow,
    up's progress) is not waited for, since being let through is all this test asks."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(key.lower().encode(), value.encode()) for key, value in headers.items()]
        + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    delivered, status, chunks = False, 0, []
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            if status < 400:
                answered.set()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    call = asyncio.create_task(app(scope, receive, send))
    waiting = asyncio.create_task(answered.wait())
    await asyncio.wait({call, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    for task in (call, waiting):
        task.cancel()
    if call.done() and not call.cancelled() and call.exception() is not None:
        raise call.exception()  # type: ignore[misc]
    assert status, f"{method} {path}: no answer in 60 s"
    return status, b"".join(chunks)


def inside(workspace: str, argv: list[str]) -> tuple[int, bytes, bytes]:
    """What any command inside a fake workspace answers: the facts script its empty document, others nothing."""
    if argv[:3] == ["python3", "-c", scripts.FACTS_PY]:
        return 0, json.dumps({"repo": None, "dvc_files": {}, "wandb_runs": []}).encode(), b""
    return 0, b"", b""


# a promotion of code nobody uploaded: refused past the role check (a spec without `promote:` is a 400 too)
PROMOTION = {"code": "0" * 64, "commit": "a" * 40, "when": 0}


class World:
    """A fake daemon with the five people, and a fresh workspace (with grants and a snapshot) per call."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fake: FakeDaemon = fake_daemon(folder / "daemon")
        tokens = self.fake.daemon.services.tokens
        self.headers: dict[str, dict[str, str]] = {"anonymous": {}}
        for role, person in PERSON.items():
            token = tokens.create(person, admin=role == "admin")
            self.headers[role] = {"Authorization": f"Bearer {token}"}
        self.fake.backend.exec_handler = inside
        self.client = TestClient(self.fake.app)
        self.client.__enter__()
        self.serial = count()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
        self.public_key = (folder / "id.pub").read_text()

    def fresh_workspace(self) -> tuple[str, str]:
        """A running workspace of olive's, granted to jill (Jupyter) and gus (SSH), and a snapshot of it."""
        name = f"w{next(self.serial)}"
        upload = project_upload(self.folder / name, name=name)
        answer = self.client.post("/v1/workspaces", json=upload, headers=self.headers["owner"])
        assert answer.status_code == 200 and '"workspace"' in answer.text.splitlines()[-1], answer.text
        for person, kind in (("jill", "jupyter"), ("gus", "ssh")):
            granted = self.client.post(
                f"/v1/workspaces/{name}/access", json={"person": person, kind: True}, headers=self.headers["owner"]
            )
            assert granted.status_code == 200, granted.text
        versioning = self.fake.daemon.services.versioning
        assert versioning is not None
        snapshot = versioning.snapshot("olive", name, "for the walk")
        return name, snapshot["id"]

    def body(self, method: str, path: str, role: str) -> dict[str, Any] | None:
        if method in ("GET", "DELETE"):
            return None
        bodies: dict[str, dict[str, Any]] = {
            "/v1/workspaces": {
                **project_upload(self.folder / f"up-{role}-{next(self.serial)}", name=f"new{next(self.serial)}")
            },
            "/v1/workspaces/{name}/access": {"person": "zed", "ssh": True},
            "/v1/workspaces/{name}/exec": {"argv": ["true"]},
            "/v1/workspaces/{name}/ssh/certificate": {"public_key": self.public_key},
            "/v1/workspaces/{name}/snapshots": {"note": "walk"},
            "/v1/workspaces/{name}/rebuild": {},
            "/v1/snapshots/{snapshot_id}/up": {"name": f"copy{next(self.serial)}"},
            "/v1/secrets/{name}": {"value": "not-a-real-secret"},
            "/v1/dotfiles": {"url": "https://example.com/me/dotfiles.git"},
            "/v1/hosts": {"name": "h1", "url": "ssh://u@127.0.0.1:1", "identity": "not a key"},
            "/v1/workspaces/{name}/sync": {"hash": "0" * 64},  # no such upload: a 400 past the role check
            "/v1/projects/lock": project_upload(self.folder / f"lock-{role}-{next(self.serial)}"),
            "/v1/projects/build": project_upload(self.folder / f"build-{role}-{next(self.serial)}"),
            "/v1/projects/verify": project_upload(self.folder / f"verify-{role}-{next(self.serial)}"),
            "/v1/projects/run": {**project_upload(self.folder / f"run-{role}-{next(self.serial)}"), "argv": ["true"]},
            "/v1/projects/ci": {**project_upload(self.folder / f"ci-{role}-{next(self.serial)}"), "code": "0" * 64},
            "/v1/projects/promote": {
                **project_upload(self.folder / f"promote-{role}-{next(self.serial)}"),
                **PROMOTION,
            },
        }
        return bodies.get(path, {})

    def call(self, method: str, template: str, role: str) -> tuple[int, str, str]:
        workspace, snapshot = (
            self.fresh_workspace() if "{name}" in template or "{snapshot_id}" in template else ("", "")
        )
        path = template
        if template.startswith("/v1/workspaces/{name}"):
            path = path.replace("{name}", workspace)
        path = (
            path.replace("{name}", "SOME_NAME")
            .replace("{snapshot_id}", snapshot)
            .replace("{person}", "gus")
            .replace("{recipe}", "cpu")
        )
        body = self.body(method, template, role)
        status, first = asyncio.run(
            first_answer(
                self.fake.app, method, path, self.headers[role], json.dumps(body).encode() if body is not None else b""
            )
        )
        try:
            payload = json.loads(first.splitlines()[0]) if first.strip() else {}
            payload = payload.get("error", payload) if isinstance(payload, dict) else {}
        except ValueError:
            payload = {}
        return status, str(payload.get("code", "")), str(payload.get("message", ""))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = World(tmp_path_factory.mktemp("roles"))
    yield made
    made.client.__exit__(None, None, None)
    made.fake.daemon.scheduler.shutdown()


def operations(world: World) -> list[tuple[str, str, Rule]]:
    schema = world.client.get("/v1/openapi.json", headers=world.headers["admin"]).json()
    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert ACCESS_KEY in operation, f"{method.upper()} {path} declares no access rule"
            found.append((method.upper(), path, Rule(operation[ACCESS_KEY])))
    return found


def test_every_route_declares_its_rule(world: World) -> None:
    routes = list(every_route(world.fake.app.routes))
    assert len(routes) > 40
    for route in routes:
        assert route_rule(route) is not None, route.path
    assert len(operations(world)) >= 35


def test_an_app_with_an_undeclared_route_is_refused() -> None:
    app, router = FastAPI(openapi_url=None, docs_url=None, redoc_url=None), APIRouter(prefix="/v1")

    @router.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    app.include_router(router)
    with pytest.raises(RuntimeError, match="/v1/forgotten declares no access rule"):
        check_declared(app)


def test_every_route_against_every_role(world: World) -> None:
    checked, failures = 0, []
    for method, path, rule in operations(world):
        for role in ROLES:
            status, code, message = world.call(method, path, role)
            allowed = role in ALLOWED[rule]
            if (method, path) in SELF_AUTHENTICATED:  # no token asked: a refusal is the signature's own
                refused = code == "unauthorized" and "token" in message
            else:
                refused = status in (401, 403, 404) and code in REFUSED_CODES
            if allowed == refused or status == 500:  # 502: a backend's failure, told as such
                failures.append(f"{method} {path} as {role}: {status} {code} (rule {rule}, allowed: {allowed})")
            checked += 1
    print(f"routes x roles checked: {checked}")
    assert not failures, "\n".join(failures)


def test_the_openapi_document_needs_a_caller(world: World) -> None:
    assert world.client.get("/v1/openapi.json").status_code == 401
    assert world.client.get("/v1/openapi.json", headers=world.headers["stranger"]).status_code == 200
