"""The daemon on TCP: every route but health needs a token; tokens are hashed, revocable, and `devenv login` works."""

from __future__ import annotations

import http.client
import json
import sqlite3

from harness.devenvd import Devenvd


def get(port: int, path: str, bearer: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_tcp_needs_a_token_for_everything_but_health(served: tuple[Devenvd, int]) -> None:
    daemon, port = served
    assert get(port, "/v1/health")[0] == 200
    for path in ("/v1/workspaces", "/v1/events", "/v1/whoami", "/v1/workspaces/x/logs"):
        status, body = get(port, path)
        assert status == 401 and body["code"] == "unauthorized", path
    made = daemon.token("create", "alice")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("dvt_") and len(secret) > 30
    assert get(port, "/v1/whoami", secret) == (200, {"actor": "alice", "admin": False})
    assert get(port, "/v1/whoami", secret + "x")[0] == 401
    with sqlite3.connect(daemon.home / "devenv.db") as db:
        hashes = [row[0] for row in db.execute("select token_hash from tokens")]
    assert hashes and secret not in hashes[0]
    assert secret.encode() not in (daemon.home / "devenv.db").read_bytes()
    assert "alice" in daemon.token("list").stdout
    assert daemon.token("create", "alice").returncode == 2  # a name is used once
    assert daemon.token("revoke", "alice").returncode == 0
    assert get(port, "/v1/whoami", secret)[0] == 401  # at once


def test_login_saves_the_daemon_and_the_cli_uses_it(served: tuple[Devenvd, int]) -> None:
    daemon, port = served
    secret = daemon.token("create", "bob").stdout.strip()
    refused = daemon.cli("login", f"tcp://127.0.0.1:{port}", "--token", "dvt_wrong")
    assert refused.returncode == 1 and "not accepted" in refused.stderr
    assert not (daemon.home / "login.json").exists()
    daemon.cli("login", f"tcp://127.0.0.1:{port}", "--token", secret, check=True)
    saved = daemon.home / "login.json"
    assert saved.stat().st_mode & 0o077 == 0
    status = daemon.cli("daemon", "status", check=True).stdout
    assert f"127.0.0.1:{port}" in status and "bob" in status
    assert "NAME" in daemon.cli("ls", check=True).stdout
    daemon.token("revoke", "bob")
    after = daemon.cli("ls")
    assert after.returncode == 1 and "unauthorized" in after.stderr and "Traceback" not in after.stderr
    daemon.cli("logout", check=True)
    assert not saved.exists()
