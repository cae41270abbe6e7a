"""What an ordinary team token tried against a real devenvd on TCP, replayed: each is refused, says why, and
changes nothing (issue 17: shutdown by any token, out-of-range numbers as 500s, a token that takes over the
socket owner's name or an existing person)."""

from __future__ import annotations

import getpass
import http.client
import json
from typing import Any

from harness.devenvd import Devenvd


def call(port: int, method: str, path: str, bearer: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = json.dumps(body).encode() if body is not None else None
    connection.request(
        method, path, body=payload, headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    )
    response = connection.getresponse()
    text = response.read()
    return response.status, json.loads(text.splitlines()[0]) if text.strip() else None


def made(daemon: Devenvd, *args: str) -> str:
    answer = daemon.token("create", *args)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def test_a_member_cannot_stop_the_daemon_and_an_admin_can(served: tuple[Devenvd, int]) -> None:
    daemon, port = served
    member, admin = made(daemon, "mallory"), made(daemon, "ada", "--admin")
    status, body = call(port, "POST", "/v1/daemon/shutdown", member)
    assert status == 403 and body["code"] == "forbidden" and "admin" in body["message"]
    assert call(port, "GET", "/v1/health", member)[0] == 200  # still serving
    status, _ = call(port, "POST", "/v1/daemon/shutdown", admin)
    assert status == 200
    assert daemon.process is not None
    daemon.process.wait(timeout=30)  # the positive control: an admin's shutdown does stop it


def test_out_of_range_numbers_are_4xx_and_store_nothing(served: tuple[Devenvd, int]) -> None:
    daemon, port = served
    member = made(daemon, "mallory")
    status, body = call(port, "GET", f"/v1/events?after={2**70}", member)
    assert status == 422 and body["code"] == "usage"
    status, body = call(port, "GET", "/v1/events?after=5", member)
    assert status == 200 and body["items"] == []
    for ttl in ("1e400d", "99999999999999999999d", "400d"):
        status, body = call(
            port, "POST", "/v1/workspaces/nope/access", member, {"person": "bob", "ssh": True, "ttl": ttl}
        )
        assert 400 <= status < 500, (ttl, status, body)
    status, body = call(port, "GET", "/v1/workspaces/nope/logs?tail=99999999999999999999999", member)
    assert 400 <= status < 500, body


def test_a_token_cannot_take_over_the_socket_owner_or_an_existing_person(served: tuple[Devenvd, int]) -> None:
    daemon, port = served
    owner = daemon.token("create", getpass.getuser())
    assert owner.returncode != 0 and "daemon's own user" in owner.stderr
    alice = made(daemon, "alice")
    status, _ = call(port, "PUT", "/v1/secrets/GIT_TOKEN", alice, {"value": "alices"})
    assert status == 200
    assert daemon.token("revoke", "alice").returncode == 0
    again = daemon.token("create", "alice")  # alice holds a secret here: a new token for her must be said
    assert again.returncode != 0 and "--reissue" in again.stderr
    reissued = made(daemon, "alice", "--reissue")
    status, body = call(port, "GET", "/v1/secrets", reissued)
    assert status == 200 and [item["name"] for item in body["items"]] == ["GIT_TOKEN"]
