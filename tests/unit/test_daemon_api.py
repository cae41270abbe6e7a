"""The daemon's API over its real store, with a FakeBackend behind the Backend protocol."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.backends.base import volume_name
from devenv.errors import PortInUse, error_from_payload
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import FakeBackend


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def up(api: TestClient, upload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return frames(api.post("/v1/workspaces", json={**upload, "name": name}))[-1]


def test_health_needs_no_token_and_everything_else_does(fake: FakeDaemon) -> None:
    with TestClient(fake.app) as anonymous:
        assert anonymous.get("/v1/health").json()["ok"] is True
        for method, path in [
            ("GET", "/v1/workspaces"),
            ("GET", "/v1/whoami"),
            ("GET", "/v1/events"),
            ("POST", "/v1/workspaces/x/stop"),
            ("DELETE", "/v1/workspaces/x"),
        ]:
            answer = anonymous.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert answer.json()["code"] == "unauthorized"
        wrong = anonymous.get("/v1/whoami", headers={"Authorization": "Bearer dvt_wrong"})
        assert wrong.status_code == 401
        assert anonymous.get("/v1/whoami", headers=fake.headers).json() == {"actor": "tester", "admin": False}


def test_tokens_are_stored_hashed(fake: FakeDaemon, tmp_path: Path) -> None:
    database = sqlite3.connect(tmp_path / "daemon" / "store.db")
    stored = database.execute("select token_hash from tokens").fetchall()
    assert stored and all(fake.token not in row[0] for row in stored)
    assert fake.token.encode() not in (tmp_path / "daemon" / "store.db").read_bytes()


def test_openapi_is_published_under_v1(api: TestClient) -> None:
    paths = api.get("/v1/openapi.json").json()["paths"]
    assert "/v1/workspaces" in paths and "/v1/workspaces/{name}/exec" in paths


def test_up_builds_and_starts_and_is_idempotent(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="alpha")
    answer = frames(api.post("/v1/workspaces", json=upload))
    assert answer[-1]["workspace"]["state"] == "running"
    states = [f["event"]["message"] for f in answer if "event" in f and f["event"]["kind"] == "state"]
    assert any("building" in s for s in states) and any("-> running" in s for s in states)
    workspace = answer[-1]["workspace"]
    assert workspace["ssh_port"] and workspace["image"].startswith("devenv/alpha:")
    again = up(api, upload)
    assert again["workspace"]["state"] == "running"
    assert fake.backend.calls["create"] == 1
    assert [w["name"] for w in api.get("/v1/workspaces").json()["items"]] == ["alpha"]


def test_concurrent_ups_of_one_name_make_one_workspace(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="same")
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(up(api, upload))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r["workspace"]["state"] == "running" for r in results), results
    assert len(fake.backend.list_workspaces()) == 1
    assert api.get("/v1/workspaces").json()["total"] == 1


def test_ten_concurrent_ups_of_different_names_all_succeed(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="many")
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda i=i: results.append(up(api, upload, f"many-{i}"))) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["workspace"]["name"] for r in results) == sorted(f"many-{i}" for i in range(10))
    assert {r["workspace"]["state"] for r in results} == {"running"}
    assert fake.backend.calls["build"] == 10  # each asks; the per-tag lock makes them one build in turn


def test_an_invalid_spec_is_refused_with_file_and_line_and_nothing_is_made(
    api: TestClient, fake: FakeDaemon, tmp_path: Path
) -> None:
    upload = project_upload(tmp_path / "p", name="bad")
    upload["files"]["devenv.yaml"] += "gpus: 2\n"
    answer = api.post("/v1/workspaces", json=upload)
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "spec_invalid"
    issue = body["issues"][0]
    assert issue["file"] == "devenv.yaml" and issue["line"] and "gpus" in issue["message"] + issue["field"]
    error = error_from_payload(body)
    assert "devenv.yaml" in error.render()
    assert api.get("/v1/workspaces").json()["total"] == 0 and fake.backend.calls["create"] == 0


def test_a_stale_lock_is_refused_before_anything_is_made(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="stale")
    upload["files"]["requirements.in"] += "numpy\n"
    answer = api.post("/v1/workspaces", json=upload)
    assert answer.status_code == 409 and answer.json()["code"] == "lock_mismatch"
    assert "devenv.lock" in answer.json()["message"] and "/projects/" not in answer.json()["message"]
    assert api.get("/v1/workspaces").json()["total"] == 0


def test_up_without_a_lock_resolves_one_and_serves_it(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="nolock", lock=False)
    assert "devenv.lock" not in upload["files"]
    assert up(api, upload)["workspace"]["state"] == "running"
    assert len(fake.backend.locked) == 1
    lock = api.get("/v1/workspaces/nolock/lock").json()["lock"]
    assert (lock is not None and "fake-base" in lock) or "devenv/base:cpu-fake" in (lock or "")


def test_an_unreachable_engine_names_its_url_and_makes_no_record(
    api: TestClient, fake: FakeDaemon, tmp_path: Path
) -> None:
    fake.backend.reachable = False
    answer = api.post("/v1/workspaces", json=project_upload(tmp_path / "p", name="down"))
    assert answer.status_code == 502
    assert answer.json()["code"] == "engine_unreachable" and fake.backend.url in answer.json()["message"]
    assert api.get("/v1/workspaces").json()["total"] == 0


def test_a_port_taken_on_first_up_rolls_everything_back(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    fake.backend.fail_next("start", PortInUse("port 8080 on fake://engine is already taken"))
    last = up(api, project_upload(tmp_path / "p", name="porty"))
    assert last["error"]["code"] == "port_in_use" and "8080" in last["error"]["message"]
    assert api.get("/v1/workspaces").json()["total"] == 0
    assert fake.backend.list_workspaces() == []
    assert volume_name("porty") not in {v.name for v in fake.backend.list_volumes()}
    assert any("rolled back" in e["message"] for e in api.get("/v1/events?workspace=porty").json()["items"])


def test_unknown_workspace_round_trips_as_its_error(api: TestClient) -> None:
    for method, path in [
        ("GET", "/v1/workspaces/ghost"),
        ("POST", "/v1/workspaces/ghost/stop"),
        ("POST", "/v1/workspaces/ghost/start"),
        ("DELETE", "/v1/workspaces/ghost"),
        ("POST", "/v1/workspaces/ghost/exec"),
    ]:
        answer = api.request(method, path, json={"argv": ["true"]} if path.endswith("exec") else None)
        assert answer.status_code == 404, (method, path, answer.text)
        error = error_from_payload(answer.json())
        assert error.code == "workspace_not_found" and type(error).__name__ == "WorkspaceNotFound"


def test_stop_start_remove_keep_volume(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    up(api, project_upload(tmp_path / "p", name="life"))
    assert frames(api.post("/v1/workspaces/life/stop"))[-1]["workspace"]["state"] == "stopped"
    assert not fake.backend.list_workspaces()[0].running
    assert frames(api.post("/v1/workspaces/life/stop"))[-1]["workspace"]["state"] == "stopped"  # no-op
    assert frames(api.post("/v1/workspaces/life/start"))[-1]["workspace"]["state"] == "running"
    assert frames(api.delete("/v1/workspaces/life?keep_volume=true"))[-1] == {"deleted": "life"}
    assert fake.backend.list_workspaces() == []
    assert volume_name("life") in {v.name for v in fake.backend.list_volumes()}
    assert api.get("/v1/workspaces/life").status_code == 404
    up(api, project_upload(tmp_path / "p2", name="life"))
    assert frames(api.delete("/v1/workspaces/life"))[-1] == {"deleted": "life"}
    assert volume_name("life") not in {v.name for v in fake.backend.list_volumes()}


def test_exec_streams_output_and_exit_code(api: TestClient, tmp_path: Path) -> None:
    import base64

    up(api, project_upload(tmp_path / "p", name="runner"))
    got = frames(api.post("/v1/workspaces/runner/exec", json={"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]}))
    out = b"".join(base64.b64decode(f["stdout"]) for f in got if "stdout" in f)
    err = b"".join(base64.b64decode(f["stderr"]) for f in got if "stderr" in f)
    assert (out, err, got[-1]) == (b"out\n", b"err\n", {"exit": 3})
    api.post("/v1/workspaces/runner/stop")
    refused = api.post("/v1/workspaces/runner/exec", json={"argv": ["true"]})
    assert refused.status_code == 409 and "devenv start runner" in refused.json()["hint"]


def test_rebuild_replaces_the_container_and_keeps_the_home(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="rebuilt")
    up(api, upload)
    frames(api.post("/v1/workspaces/rebuilt/exec", json={"argv": ["sh", "-c", "echo kept > /home/dev/notes"]}))
    first = fake.backend.list_workspaces()[0].container_id
    after = frames(api.post("/v1/workspaces/rebuilt/rebuild", json={"project": upload}))[-1]["workspace"]
    assert after["state"] == "running" and fake.backend.list_workspaces()[0].container_id != first
    got = frames(api.post("/v1/workspaces/rebuilt/exec", json={"argv": ["cat", "/home/dev/notes"]}))
    assert b"kept" in __import__("base64").b64decode(got[0]["stdout"])


def test_every_change_is_in_the_events_with_its_actor(api: TestClient, tmp_path: Path) -> None:
    up(api, project_upload(tmp_path / "p", name="audited"))
    api.post("/v1/workspaces/audited/stop")
    events = api.get("/v1/events?workspace=audited").json()["items"]
    api_calls = [(e["actor"], e["message"]) for e in events if e["kind"] == "api"]
    assert ("tester", "up (new)") in api_calls and ("tester", "stop") in api_calls
    transitions = [e["message"] for e in events if e["kind"] == "state"]
    assert "running -> stopping" in transitions[-2]
    assert transitions[-1] == "stopping -> stopped: stopped by tester"


def test_list_is_paginated_by_name(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="page")
    for i in range(5):
        up(api, upload, f"page-{i}")
    first = api.get("/v1/workspaces?limit=2").json()
    assert [w["name"] for w in first["items"]] == ["page-0", "page-1"] and first["total"] == 5
    second = api.get(f"/v1/workspaces?limit=2&after={first['next']}").json()
    assert [w["name"] for w in second["items"]] == ["page-2", "page-3"]


def test_gpu_spec_asks_the_backend_for_devices(api: TestClient, fake: FakeDaemon, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="gpu", edit={"resources:\n": "resources:\n  gpu: A100:2\n"})
    seen: list[Any] = []
    original = fake.backend.create

    def spy(request: Any) -> Any:
        seen.append(request)
        return original(request)

    fake.backend.create = spy  # type: ignore[method-assign]
    before = time.time()
    workspace = up(api, upload)["workspace"]
    assert workspace["state"] == "running"
    assert (seen[0].gpu_count, seen[0].gpu_kind) == (2, "A100")
    assert (seen[0].cpu, seen[0].memory) == (2, 4 * 1024**3)
    assert workspace["gpu"] == "A100:2"  # listings show what was asked for
    assert before <= workspace["started_at"] <= time.time()
    api.post("/v1/workspaces/gpu/stop")
    assert api.get("/v1/workspaces/gpu").json()["started_at"] is None  # only a running workspace has an uptime


def test_backend_named_in_the_spec_must_exist(api: TestClient, tmp_path: Path) -> None:
    upload = project_upload(tmp_path / "p", name="where", edit={"name: where\n": "name: where\nbackend: mars\n"})
    answer = api.post("/v1/workspaces", json=upload)
    assert answer.status_code == 400 and "mars" in answer.json()["message"]


def test_other_backends_are_used_by_name(tmp_path: Path) -> None:
    other = FakeBackend("gpu-box", "fake://gpu-box")
    fake = fake_daemon(tmp_path / "d", extra={"gpu-box": other})
    with TestClient(fake.app, headers=fake.headers) as api:
        listed = api.get("/v1/backends").json()["items"]
        assert [(item["name"], item["url"], item["usable"]) for item in listed] == [
            ("local", fake.backend.url, True),
            ("gpu-box", "fake://gpu-box", True),
        ]
        upload = project_upload(
            tmp_path / "p", name="remote", edit={"name: remote\n": "name: remote\nbackend: gpu-box\n"}
        )
        assert up(api, upload)["workspace"]["backend"] == "gpu-box"
    assert [w.workspace for w in other.list_workspaces()] == ["remote"] and fake.backend.list_workspaces() == []


def test_ssh_certificates_for_the_owner_only_and_the_files_the_workspace_gets(
    api: TestClient, fake: FakeDaemon, tmp_path: Path
) -> None:
    import subprocess

    up(api, project_upload(tmp_path / "p", name="reach"))
    placed = fake.backend.files("reach")
    ca_public = (tmp_path / "daemon" / "ca" / "ssh_ca.pub").read_text()
    assert placed["/etc/devenv/ssh/ca.pub"].decode() == ca_public
    assert placed["/etc/devenv/ssh/principals"] == b"tester\n"
    assert placed["/etc/devenv/ssh/revoked.krl"].startswith(b"SSHKRL")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    public = (tmp_path / "id.pub").read_text()
    answer = api.post("/v1/workspaces/reach/ssh/certificate", json={"public_key": public})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (tmp_path / "id-cert.pub").write_text(body["certificate"] + "\n")
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(tmp_path / "id-cert.pub")], capture_output=True, text=True, check=True
    ).stdout
    assert 'Key ID: "tester"' in shown and "tester" in shown.split("Principals:")[1]
    assert body["port"] and 3500 < body["valid_before"] - __import__("time").time() <= 3600
    other = fake.daemon.services.tokens.create("eve")
    refused = api.post(
        "/v1/workspaces/reach/ssh/certificate",
        json={"public_key": public},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    bad = api.post("/v1/workspaces/reach/ssh/certificate", json={"public_key": "ssh-ed25519"})
    assert bad.status_code == 400 and "public key" in bad.json()["message"]
    assert any(
        "SSH certificate for tester" in e["message"] for e in api.get("/v1/events?workspace=reach").json()["items"]
    )


def test_every_route_in_the_openapi_document_needs_a_token(fake: FakeDaemon) -> None:
    with TestClient(fake.app) as anonymous:
        document = anonymous.get("/v1/openapi.json", headers=fake.headers).json()
        checked = 0
        for path, operations in document["paths"].items():
            concrete = path.replace("{name}", "some-workspace")
            for method in operations:
                for headers in ({}, {"Authorization": "Bearer dvt_not-a-token"}, {"Authorization": "Basic x"}):
                    answer = anonymous.request(method.upper(), concrete, headers=headers, json={})
                    if path == "/v1/health":
                        assert answer.status_code == 200
                        continue
                    assert answer.status_code == 401, (method, path, headers, answer.text)
                    assert answer.json()["code"] == "unauthorized"
                checked += 1
    assert checked >= 15  # every route of the API, not a sample


def test_what_a_request_sent_comes_back_in_an_error_even_a_lone_surrogate(api: TestClient) -> None:
    """A message may quote the request; JSON in ASCII carries what UTF-8 cannot (it was a 500)."""
    body = {"spec_path": "\ud800", "files": {"devenv.yaml": "name: x\n"}, "name": "fz\n"}
    answer = api.post("/v1/workspaces", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["code"] == "spec_invalid"
    assert answer.json()["issues"][0]["field"] == "name" and answer.json()["issues"][0]["file"] == "\ud800"
