"""The wire models (devenv/wire.py) against what the routes answer: every typed route is called through the
fake daemon; what its handler returned (before FastAPI's response_model leaves undeclared keys out) must
have exactly the declared keys, and the body sent must validate strictly. A key added on one side only
fails here: sent but not declared, or declared but never sent."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import fastapi.routing
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from typing_extensions import get_type_hints, is_typeddict

from devenv import wire
from devenv.backends.base import Gpu, HostFacts
from devenv.daemon.api.authz import every_route
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import ExecResult, FakeBackend
from devenv.versioning import scripts
from harness.archives import code_tar

WS = "wired"
# declared keys a fake daemon never sends: a live event's data (the follow stream's, not GET /v1/events);
# a provisioner's machine (a cloud backend) in the host list; a data pull's result, a failed change's error
NEVER_HERE = {
    (wire.EventView, "data"),
    (wire.HostView, "workspace"),
    (wire.HostView, "instance"),
    (wire.ChangeFrame, "setup"),
    (wire.ChangeFrame, "error"),
}
# typed routes this test does not call: an admin's, reaching AWS or an SSH host
NOT_CALLED = {("POST", "/v1/hosts"), ("POST", "/v1/offers/refresh"), ("POST", "/v1/daemon/shutdown")}


class InspectableFake(FakeBackend):
    """A FakeBackend that describes its machine (a host's facts, with a GPU)."""

    def facts(self) -> HostFacts:
        return HostFacts(
            engine_version="27.1.1",
            os="Fake Linux",
            arch="x86_64",
            cpus=16,
            memory_bytes=2**36,
            disk_free_bytes=10**11,
            disk_total_bytes=10**12,
            gpus=(Gpu("0", "NVIDIA A100", 81920, 0, 0, WS),),
        )


def inside(_workspace: str, argv: list[str]) -> ExecResult | None:
    """The workspace's facts script, as a workspace without a clone answers it."""
    if argv[:3] == ["python3", "-c", scripts.FACTS_PY]:
        return 0, json.dumps({"repo": None, "dvc_files": {}, "wandb_runs": ["run1"]}).encode(), b""
    return None


class Recorder:
    """What each typed route's handler returned, before response_model filtered it."""

    def __init__(self) -> None:
        self.answers: list[tuple[Any, Any]] = []  # (the declared type, what the handler returned)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = fastapi.routing.serialize_response

        async def recording(*, field: Any = None, response_content: Any, **kwargs: Any) -> Any:
            if field is not None:
                self.answers.append((field.field_info.annotation, response_content))
            return await original(field=field, response_content=response_content, **kwargs)

        monkeypatch.setattr(fastapi.routing, "serialize_response", recording)


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(
        tmp_path / "daemon",
        FakeBackend("local", exec_handler=inside),
        extra={"box": InspectableFake("box", "fake://box")},
    )


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    recorder.install(monkeypatch)
    return recorder


@pytest.fixture
def api(fake: FakeDaemon, recorder: Recorder) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


def keys_of(value: Any, declared: Any, where: str, seen: dict[Any, set[str]]) -> None:
    """`value` has the keys `declared` names (required ones all there, none undeclared), recursively."""
    if is_typeddict(declared):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        hints = get_type_hints(declared)
        sent = set(value)
        assert sent <= set(hints), f"{where}: sent but not declared in {declared.__name__}: {sent - set(hints)}"
        missing = set(declared.__required_keys__) - sent
        assert not missing, f"{where}: declared in {declared.__name__} but not sent: {missing}"
        seen.setdefault(declared, set()).update(sent)
        for key in sent:
            keys_of(value[key], hints[key], f"{where}.{key}", seen)
    elif get_origin(declared) is list and value is not None:
        for index, item in enumerate(value):
            keys_of(item, get_args(declared)[0], f"{where}[{index}]", seen)
    elif get_origin(declared) in (Union, types.UnionType) and value is not None:
        for option in get_args(declared):
            if is_typeddict(option) or get_origin(option) is list:
                keys_of(value, option, where, seen)


def check(answer: Any, declared: Any, where: str, seen: dict[Any, set[str]]) -> None:
    keys_of(answer, declared, where, seen)
    TypeAdapter(declared).validate_python(answer, strict=True)


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def key_pair(tmp_path: Path) -> str:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text()


def typed_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of the routes whose response_model is a wire model."""
    return {
        (method, route.path)
        for route in every_route(app.routes)
        if isinstance(route, APIRoute) and getattr(route.response_model, "__module__", None) == wire.__name__
        for method in route.methods
    }


def test_every_typed_route_answers_exactly_its_wire_model(
    api: TestClient, fake: FakeDaemon, recorder: Recorder, tmp_path: Path
) -> None:
    seen: dict[Any, set[str]] = {}
    changes = frames(api.post("/v1/workspaces", json=project_upload(tmp_path / "p", name=WS)))
    for index, frame in enumerate(changes):
        check(frame, wire.ChangeFrame, f"up[{index}]", seen)
    assert changes[-1]["workspace"]["state"] == "running"
    alice = {"Authorization": f"Bearer {fake.daemon.services.tokens.create('alice')}"}
    calls: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("GET", "/v1/health", None, None),
        ("GET", "/v1/whoami", None, None),
        ("GET", "/v1/backends", None, None),
        ("GET", f"/v1/workspaces/{WS}", None, None),
        ("GET", f"/v1/workspaces/{WS}/project", None, None),
        ("GET", f"/v1/workspaces/{WS}/lock", None, None),
        ("GET", f"/v1/workspaces/{WS}/status", None, None),
        ("POST", f"/v1/workspaces/{WS}/access", {"person": "alice", "ssh": True, "jupyter": True, "ttl": "2h"}, None),
        ("GET", f"/v1/workspaces/{WS}/access?ended=true", None, None),
        ("POST", f"/v1/workspaces/{WS}/ssh/certificate", {"public_key": key_pair(tmp_path)}, alice),
        ("POST", f"/v1/workspaces/{WS}/jupyter/login", None, alice),
        ("DELETE", f"/v1/workspaces/{WS}/access/alice", None, None),
        ("POST", f"/v1/workspaces/{WS}/snapshots", {"note": "wired"}, None),
        ("GET", "/v1/snapshots", None, None),
        ("PUT", "/v1/secrets/API_KEY", {"value": "v"}, None),
        ("GET", "/v1/secrets", None, None),
        ("DELETE", "/v1/secrets/API_KEY", None, None),
        ("PUT", "/v1/dotfiles", {"url": "https://example.com/me/dotfiles.git"}, None),
        ("GET", "/v1/dotfiles", None, None),
        ("DELETE", "/v1/dotfiles", None, None),
        ("GET", "/v1/hosts", None, None),
        ("DELETE", "/v1/hosts/nowhere", None, None),  # refused (not an admin): the route is still reached
        ("GET", "/v1/offers?gpu=A100&limit=3", None, None),
        ("GET", "/v1/events?limit=50", None, None),
        ("GET", "/v1/images", None, None),
    ]
    called: set[tuple[str, str]] = set()
    routes = [route for route in every_route(fake.app.routes) if isinstance(route, APIRoute)]
    for method, path, body, headers in calls:
        answer = api.request(method, path, json=body, headers=headers)
        route = next(
            route for route in routes if method in route.methods and route.path_regex.fullmatch(path.split("?")[0])
        )
        called.add((method, route.path))
        if path == "/v1/hosts/nowhere":
            assert answer.status_code == 403, answer.text
            continue
        assert answer.status_code == 200, (method, path, answer.text)
        check(answer.json(), route.response_model, f"{method} {path} (sent)", seen)
    snapshot = api.get("/v1/snapshots").json()["items"][0]["id"]
    check(api.get(f"/v1/snapshots/{snapshot}").json(), wire.SnapshotView, "GET /v1/snapshots/ID", seen)
    called.add(("GET", "/v1/snapshots/{snapshot_id}"))
    listed = api.get("/v1/workspaces?limit=1")  # encoded by page_json, not by FastAPI: nothing filtered
    check(listed.json(), wire.WorkspacePage, "GET /v1/workspaces", seen)
    called.add(("GET", "/v1/workspaces"))

    upload = project_upload(tmp_path / "q", name="q")
    run = {**upload, "argv": ["true"]}
    for path, body in (("lock", upload), ("build", upload), ("verify", upload), ("run", run)):
        sent = frames(api.post(f"/v1/projects/{path}", json=body))
        for index, frame in enumerate(sent):
            check(frame, wire.WorkFrame, f"{path}[{index}]", seen)
        assert "error" not in sent[-1], sent[-1]
    tested = project_upload(
        tmp_path / "t", name="t", edit={"template: minimal": 'template: minimal\nci: {test: "pytest -q"}'}
    )
    code = api.put("/v1/code", content=code_tar({"test_x.py": b"def test_x(): pass\n"})).json()["hash"]
    fake.backend.run_writes = {"coverage.xml": b"<coverage/>"}
    sent = frames(api.post("/v1/projects/ci", json={**tested, "code": code}))
    assert "changed" in sent[-2] and sent[-1] == {"exit": 0}, sent
    for index, frame in enumerate(sent):
        check(frame, wire.WorkFrame, f"ci[{index}]", seen)
    promoted = project_upload(
        tmp_path / "p",
        name="p",
        edit={"template: minimal": 'template: minimal\npromote: {entrypoint: "python app.py"}'},
    )
    facts = {"commit": "b" * 40, "when": 1, "source": "https://example.com/p.git", "notes": ["a note"]}
    sent = frames(
        api.post("/v1/projects/promote", json={**promoted, **facts, "code": code, "tag": "r:5000/p:1", "push": True})
    )
    assert sent[-1]["promoted"]["pushed"]["reference"].startswith("r:5000/p@sha256:"), sent
    for index, frame in enumerate(sent):
        check(frame, wire.WorkFrame, f"promote[{index}]", seen)
    for index, frame in enumerate(frames(api.post("/v1/images/cpu/bootstrap"))):
        check(frame, wire.WorkFrame, f"bootstrap[{index}]", seen)
    fake.backend.exec_handler = lambda image, argv: (1, b"", b"to stderr\n")
    fake.backend.reachable = False  # found only once the work runs: the stream's last line is the error
    failed = frames(api.post("/v1/projects/run", json=run))
    fake.backend.reachable = True
    assert failed[-1]["error"]["code"] == "engine_unreachable"
    for index, frame in enumerate([*failed, *frames(api.post("/v1/projects/run", json=run))]):
        check(frame, wire.WorkFrame, f"run[{index}]", seen)

    removed = frames(api.delete(f"/v1/workspaces/{WS}"))
    for index, frame in enumerate(removed):
        check(frame, wire.ChangeFrame, f"rm[{index}]", seen)
    assert removed[-1] == {"deleted": WS}
    assert recorder.answers
    for declared, returned in recorder.answers:  # what the handlers returned (Python values), before filtering
        keys_of(returned, declared, f"{getattr(declared, '__name__', declared)} (returned)", seen)
    for declared, sent in seen.items():
        never = set(get_type_hints(declared)) - sent - {key for kind, key in NEVER_HERE if kind is declared}
        assert not never, f"{declared.__name__} declares keys no route sent: {never}"
    assert typed_routes(fake.app) - NOT_CALLED <= called, "a typed route this test does not call"


def test_the_client_reads_the_wire_models_without_pydantic_or_fastapi() -> None:
    code = (
        "import sys, devenv.client; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'fastapi', 'starlette')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
