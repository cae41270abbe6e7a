"""Per-person access grants through the daemon's API: SSH certificates, sshd's files, the Jupyter proxy."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from devenv.daemon.api.jupyter_proxy import CLOSE_REVOKED, COOKIE
from devenv.daemon.services.access_container import END_SESSIONS, JUPYTER_SECRET_PATH, SSH_DIR
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import ExecResult, FakeBackend

WS = "shared"
PRINCIPALS = f"{SSH_DIR}/principals"
LOGINS = f"{SSH_DIR}/logins"
KRL = f"{SSH_DIR}/revoked.krl"
PERSON_PORT = 28888


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def execs() -> list[tuple[str, list[str]]]:
    return []


@pytest.fixture
def fake(tmp_path: Path, execs: list[tuple[str, list[str]]]) -> FakeDaemon:
    def handler(workspace: str, argv: list[str]) -> ExecResult | None:
        execs.append((workspace, list(argv)))
        if argv[: len(END_SESSIONS)] == END_SESSIONS and "--jupyter" in argv:
            return 0, f"{PERSON_PORT}\n".encode(), b""  # a grantee's own JupyterLab listens there
        if argv[: len(END_SESSIONS)] == END_SESSIONS:
            return 0, b"", b""
        return None  # the fake shell answers everything else

    return fake_daemon(tmp_path / "daemon", FakeBackend("local", exec_handler=handler))


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


@pytest.fixture
def people(fake: FakeDaemon) -> dict[str, dict[str, str]]:
    """Authorization headers for tester (the owner), alice, bob, and root2 (an admin token)."""
    tokens = fake.daemon.services.tokens
    made = {"alice": tokens.create("alice"), "bob": tokens.create("bob"), "root2": tokens.create("root2", admin=True)}
    return {"tester": fake.headers, **{name: {"Authorization": f"Bearer {token}"} for name, token in made.items()}}


@pytest.fixture
def workspace(api: TestClient, tmp_path: Path) -> str:
    last = up(api, project_upload(tmp_path / "p", name=WS), WS)
    assert last["workspace"]["state"] == "running", last
    assert last["workspace"]["owner"] == "tester"
    return WS


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def up(api: TestClient, upload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return frames(api.post("/v1/workspaces", json={**upload, "name": name}))[-1]


def grant(api: TestClient, headers: dict[str, str], person: str, *, ws: str = WS, **what: Any) -> Any:
    return api.post(f"/v1/workspaces/{ws}/access", json={"person": person, **what}, headers=headers)


def revoke(api: TestClient, headers: dict[str, str], person: str, *, ws: str = WS) -> Any:
    return api.delete(f"/v1/workspaces/{ws}/access/{person}", headers=headers)


def key_pair(tmp_path: Path, name: str) -> Path:
    key = tmp_path / "keys" / name
    key.parent.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def ask_certificate(api: TestClient, headers: dict[str, str], key: Path, *, ws: str = WS) -> Any:
    return api.post(
        f"/v1/workspaces/{ws}/ssh/certificate",
        json={"public_key": key.with_suffix(".pub").read_text()},
        headers=headers,
    )


def certificate_file(api: TestClient, headers: dict[str, str], key: Path) -> tuple[Path, dict[str, Any]]:
    answer = ask_certificate(api, headers, key)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    path = key.with_name(key.name + "-cert.pub")
    path.write_text(body["certificate"] + "\n")
    return path, body


def shown(cert: Path) -> str:
    return subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], check=True, capture_output=True, text=True).stdout


def principals_of(cert: Path) -> list[str]:
    lines = shown(cert).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Principals:")
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith((" " * 16, "\t\t")):
            break
        found.append(line.strip())
    return found


def revoked(krl: bytes, cert: Path) -> bool:
    path = cert.with_name("revoked.krl")
    path.write_bytes(krl)
    result = subprocess.run(["ssh-keygen", "-Q", "-f", str(path), str(cert)], capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert ("REVOKED" in out) == (result.returncode != 0), out
    return result.returncode != 0


def grants(api: TestClient, *, ended: bool = False) -> list[dict[str, Any]]:
    answer = api.get(f"/v1/workspaces/{WS}/access", params={"ended": "true"} if ended else None)
    assert answer.status_code == 200, answer.text
    return answer.json()["grants"]


def admitted(files: dict[str, bytes]) -> list[str]:
    """Whom the workspace's sshd lets in, as ssh-principals answers: the owner as `dev` (the only
    principal for dev), then each SSH grantee, only under a login of their own."""
    assert files[PRINCIPALS] == b"tester\n"
    people = ["tester"]
    for line in files.get(LOGINS, b"").decode().splitlines():
        login, person, gid, kinds = line.split()
        assert (login == "dev") == (gid == "-") and (login == "dev" or login.endswith(f"-{gid}")), line
        if login != "dev" and "ssh" in kinds.split(","):
            people.append(person)
    return people[:1] + sorted(people[1:])


def end_sessions(execs: list[tuple[str, list[str]]]) -> list[list[str]]:
    """The people each run of the workspace's access tool ended (those that killed anything)."""
    found = []
    for _, argv in execs:
        args = argv[len(END_SESSIONS) :]
        if argv[: len(END_SESSIONS)] == END_SESSIONS and "--kill-gid" in args:
            found.append(
                [
                    word
                    for before, word in zip(["", *args], args, strict=False)
                    if not word.startswith("--") and before not in ("--kill-gid", "--drop-secret")
                ]
            )
    return found


# -- SSH -----------------------------------------------------------------------------------------


def test_an_ssh_grant_lets_the_person_in_and_nobody_else(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    alice, bob = people["alice"], people["bob"]
    key = key_pair(tmp_path, "alice")
    refused = ask_certificate(api, alice, key)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert "alice" in refused.json()["message"] and "--ssh" in refused.json()["hint"]
    no_exec = api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["true"]}, headers=alice)
    assert no_exec.status_code == 403 and no_exec.json()["code"] == "forbidden"
    no_logs = api.get(f"/v1/workspaces/{WS}/logs", headers=alice)  # output is as private as a shell
    assert no_logs.status_code == 403 and no_logs.json()["code"] == "forbidden"
    for who in (alice, bob):
        denied = grant(api, who, "alice", ssh=True)
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    assert admitted(fake.backend.files(WS)) == ["tester"]
    assert grants(api) == []

    given = grant(api, people["tester"], "alice", ssh=True)
    assert given.status_code == 200, given.text
    body = given.json()
    assert (body["person"], body["ssh"], body["jupyter"], body["expires_at"], body["granted_by"]) == (
        "alice",
        True,
        False,
        None,
        "tester",
    )
    assert admitted(fake.backend.files(WS)) == ["tester", "alice"]

    cert, answer = certificate_file(api, alice, key)
    assert answer["principal"] == "alice" and answer["host_name"] == f"{WS}.devenv"
    assert principals_of(cert) == ["alice"] and 'Key ID: "alice"' in shown(cert)
    assert not revoked(fake.backend.files(WS)[KRL], cert)
    ran = frames(api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["sh", "-c", "echo hi"]}, headers=alice))
    assert ran[-1] == {"exit": 0}
    assert api.get(f"/v1/workspaces/{WS}/logs", headers=alice).status_code == 200

    listed = grants(api)
    assert [(g["person"], g["ssh"], g["jupyter"]) for g in listed] == [("alice", True, False)]
    assert api.get(f"/v1/workspaces/{WS}/access", headers=alice).json()["owner"] == "tester"
    hidden = api.get(f"/v1/workspaces/{WS}/access", headers=bob)  # no access: may not see who has it
    assert hidden.status_code == 403 and hidden.json()["code"] == "forbidden"

    only_ssh = api.post(f"/v1/workspaces/{WS}/jupyter/login", headers=alice)
    assert only_ssh.status_code == 403 and only_ssh.json()["code"] == "forbidden"
    assert ask_certificate(api, bob, key_pair(tmp_path, "bob")).status_code == 403
    assert end_sessions(execs) == []  # granting ends nobody's sessions
    assert any("granted ssh to alice" in e["message"] for e in api.get(f"/v1/events?workspace={WS}").json()["items"])


def test_a_grant_is_for_one_workspace(
    api: TestClient, workspace: str, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    assert up(api, project_upload(tmp_path / "q", name="other"), "other")["workspace"]["state"] == "running"
    assert grant(api, people["tester"], "alice", ssh=True, jupyter=True).status_code == 200
    key = key_pair(tmp_path, "alice")
    assert ask_certificate(api, people["alice"], key).status_code == 200
    elsewhere = ask_certificate(api, people["alice"], key, ws="other")
    assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "forbidden"
    assert api.post("/v1/workspaces/other/jupyter/login", headers=people["alice"]).status_code == 403


def test_revoking_rewrites_sshd_files_and_ends_only_that_persons_sessions(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    tester = people["tester"]
    assert grant(api, tester, "alice", ssh=True).status_code == 200
    assert grant(api, tester, "bob", ssh=True).status_code == 200
    assert admitted(fake.backend.files(WS)) == ["tester", "alice", "bob"]
    alice_cert, _ = certificate_file(api, people["alice"], key_pair(tmp_path, "alice"))
    tester_cert, _ = certificate_file(api, tester, key_pair(tmp_path, "tester"))
    assert end_sessions(execs) == []

    answer = revoke(api, tester, "alice")
    assert answer.status_code == 200, answer.text
    assert answer.json()["ended_by"] == "tester" and answer.json()["ended_at"] is not None
    files = fake.backend.files(WS)
    assert admitted(files) == ["tester", "bob"]
    assert revoked(files[KRL], alice_cert)
    assert not revoked(files[KRL], tester_cert)
    assert end_sessions(execs) == [["alice"]]
    assert ask_certificate(api, people["alice"], key_pair(tmp_path, "alice2")).status_code == 403
    assert api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["true"]}, headers=people["alice"]).status_code == 403
    assert [g["person"] for g in grants(api)] == ["bob"]
    assert [(g["person"], g["ended_by"]) for g in grants(api, ended=True)] == [("alice", "tester"), ("bob", None)]

    owner = revoke(api, tester, "tester")
    assert owner.status_code == 400 and owner.json()["code"] == "usage"
    again = revoke(api, tester, "alice")
    assert again.status_code == 400 and again.json()["code"] == "usage"
    never = revoke(api, tester, "carol")
    assert never.status_code == 400 and "no grant" in never.json()["message"]

    # granted again: her key id leaves the revocation list
    assert grant(api, tester, "alice", ssh=True).status_code == 200
    files = fake.backend.files(WS)
    assert admitted(files) == ["tester", "alice", "bob"]
    assert not revoked(files[KRL], alice_cert)


def test_an_admin_may_revoke_on_anyones_workspace_others_may_not(
    api: TestClient, fake: FakeDaemon, workspace: str, people: dict[str, dict[str, str]]
) -> None:
    assert grant(api, people["tester"], "alice", ssh=True).status_code == 200
    for who in ("bob", "alice"):
        refused = revoke(api, people[who], "alice")
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden", who
    assert admitted(fake.backend.files(WS)) == ["tester", "alice"]
    done = revoke(api, people["root2"], "alice")
    assert done.status_code == 200, done.text
    assert done.json()["ended_by"] == "root2"
    assert admitted(fake.backend.files(WS)) == ["tester"]
    by_admin = grant(api, people["root2"], "bob", jupyter=True)
    assert by_admin.status_code == 200 and by_admin.json()["granted_by"] == "root2"


# -- TTL -----------------------------------------------------------------------------------------


def test_a_certificate_never_outlives_a_grant_with_a_ttl(
    api: TestClient, workspace: str, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    before = time.time()
    answer = grant(api, people["tester"], "alice", ssh=True, ttl="2s")
    assert answer.status_code == 200, answer.text
    expires_at = answer.json()["expires_at"]
    assert before + 2 <= expires_at <= time.time() + 2
    cert, body = certificate_file(api, people["alice"], key_pair(tmp_path, "alice"))
    assert body["valid_before"] <= expires_at + 0.1  # microseconds between the two clocks' reads
    valid = next(line for line in shown(cert).splitlines() if line.strip().startswith("Valid:"))
    until = dt.datetime.strptime(valid.split(" to ")[1].strip(), "%Y-%m-%dT%H:%M:%S").timestamp()  # local time
    assert until <= expires_at + 0.1
    # the owner's own certificate is not shortened by anyone's grant
    _, own = certificate_file(api, people["tester"], key_pair(tmp_path, "tester"))
    assert own["valid_before"] - time.time() > 3000


def test_an_expired_grant_ends_like_a_revoke(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    access = fake.daemon.services.access
    answer = grant(api, people["tester"], "alice", ssh=True, ttl="2s")
    assert answer.status_code == 200, answer.text
    assert grant(api, people["tester"], "bob", ssh=True, ttl="1h").status_code == 200
    cert, _ = certificate_file(api, people["alice"], key_pair(tmp_path, "alice"))
    assert access.expire() == 0
    time.sleep(max(0.0, answer.json()["expires_at"] - time.time()) + 0.05)
    # past its TTL she is refused at once, before the expiry loop comes round
    assert ask_certificate(api, people["alice"], key_pair(tmp_path, "alice2")).status_code == 403
    assert access.expire() == 1
    assert access.expire() == 0
    files = fake.backend.files(WS)
    assert admitted(files) == ["tester", "bob"]
    assert revoked(files[KRL], cert)
    assert end_sessions(execs) == [["alice"]]
    assert [g["person"] for g in grants(api)] == ["bob"]
    ended = {g["person"]: g for g in grants(api, ended=True)}
    assert ended["alice"]["ended_by"] == "expired" and ended["bob"]["ended_by"] is None
    assert any("alice's grant expired" in e["message"] for e in api.get(f"/v1/events?workspace={WS}").json()["items"])


def test_a_bad_ttl_is_a_usage_error_naming_the_flag(api: TestClient, workspace: str) -> None:
    for ttl in ("soon", "0s", "-5m", "3w", "1.5.2h"):
        answer = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice", "ssh": True, "ttl": ttl})
        assert answer.status_code == 400 and answer.json()["code"] == "usage", ttl
        assert "--ttl" in answer.json()["message"], ttl
    assert grants(api, ended=True) == []
    for ttl, seconds in (("90s", 90), ("30m", 1800), (" 4h ", 4 * 3600), ("2d", 2 * 86400)):
        answer = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice", "ssh": True, "ttl": ttl})
        assert answer.status_code == 200, (ttl, answer.text)
        assert abs(answer.json()["expires_at"] - time.time() - seconds) < 5, ttl
    unbounded = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice", "ssh": True, "ttl": None})
    assert unbounded.status_code == 200 and unbounded.json()["expires_at"] is None


# -- bad requests --------------------------------------------------------------------------------


def test_a_bad_person_name_is_refused(api: TestClient, fake: FakeDaemon, workspace: str) -> None:
    for person in ("al ice", "a,b", "", "-x", "a/b", "x" * 129, "alice\nbob", "ali:ce"):
        answer = api.post(f"/v1/workspaces/{WS}/access", json={"person": person, "ssh": True})
        assert answer.status_code == 400 and answer.json()["code"] == "usage", (person, answer.text)
    assert admitted(fake.backend.files(WS)) == ["tester"]
    assert grants(api, ended=True) == []


def test_a_person_name_with_a_trailing_newline_is_refused(api: TestClient, fake: FakeDaemon, workspace: str) -> None:
    answer = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice\n", "ssh": True})
    assert admitted(fake.backend.files(WS)) == ["tester"], "sshd would now let alice in"
    assert answer.status_code == 400


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30, no daylight saving
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_grant_times_are_unix_times_whatever_the_local_zone(
    api: TestClient, workspace: str, far_from_utc: None
) -> None:
    given = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice", "ssh": True}).json()
    assert abs(given["granted_at"] - time.time()) < 60
    assert api.delete(f"/v1/workspaces/{WS}/access/alice").status_code == 200
    listed = grants(api, ended=True)[0]
    assert abs(listed["granted_at"] - given["granted_at"]) < 1
    assert abs(listed["ended_at"] - time.time()) < 60


def test_a_grant_must_say_what_and_cannot_name_the_owner(api: TestClient, workspace: str) -> None:
    nothing = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice"})
    assert nothing.status_code == 400 and "--ssh" in nothing.json()["message"]
    falsy = api.post(f"/v1/workspaces/{WS}/access", json={"person": "alice", "ssh": False, "jupyter": False})
    assert falsy.status_code == 400
    owner = api.post(f"/v1/workspaces/{WS}/access", json={"person": "tester", "ssh": True})
    assert owner.status_code == 400 and owner.json()["code"] == "usage"
    assert grants(api, ended=True) == []


def test_an_unknown_workspace_is_404_everywhere(api: TestClient, tmp_path: Path) -> None:
    public = key_pair(tmp_path, "k").with_suffix(".pub").read_text()
    for method, path, body in [
        ("GET", "/v1/workspaces/ghost/access", None),
        ("POST", "/v1/workspaces/ghost/access", {"person": "alice", "ssh": True}),
        ("DELETE", "/v1/workspaces/ghost/access/alice", None),
        ("POST", "/v1/workspaces/ghost/ssh/certificate", {"public_key": public}),
        ("POST", "/v1/workspaces/ghost/jupyter/login", None),
    ]:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["code"] == "workspace_not_found"


# -- Jupyter -------------------------------------------------------------------------------------


class Upstream:
    """A stand-in JupyterLab: records each request and answers with its path and the person it was told."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body,
                        "headers": {key.lower(): value for key, value in self.headers.items()},
                        "all": [key.lower() for key in self.headers],
                    }
                )
                reply = f"{self.command} {self.path} person={self.headers.get('X-Devenv-Person')}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("X-Upstream", "yes")
                # like JupyterLab's _xsrf: meant for this browser only
                self.send_header("Set-Cookie", f"_xsrf=for-{self.headers.get('X-Devenv-Person')}; Path=/")
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address: tuple[str, int] = self.server.server_address[:2]  # type: ignore[assignment]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream(fake: FakeDaemon, workspace: str) -> Iterator[Upstream]:
    server = Upstream()
    fake.backend.services[(WS, 8888)] = server.address  # the owner's JupyterLab
    fake.backend.services[(WS, PERSON_PORT)] = server.address  # each grantee's own (one stand-in for all)
    yield server
    server.close()


@pytest.fixture
def browser(fake: FakeDaemon, api: TestClient) -> Iterator[TestClient]:
    """No token: a browser only ever holds the login link and then the cookie."""
    with TestClient(fake.app, follow_redirects=False) as client:
        yield client


def login_link(api: TestClient, headers: dict[str, str]) -> str:
    answer = api.post(f"/v1/workspaces/{WS}/jupyter/login", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url"].startswith(f"http://testserver/jupyter/{WS}/devenv-login?ticket=")
    assert body["clean_url"] == f"http://testserver/jupyter/{WS}/lab" and body["expires_in"] > 0
    parts = urlsplit(body["url"])
    return f"{parts.path}?{parts.query}"


def open_link(browser: TestClient, link: str) -> str:
    """Follow a login link like a browser; the session cookie it set (the client's jar left empty)."""
    answer = browser.get(link)
    assert answer.status_code == 303, answer.text
    cookie = answer.cookies.get(COOKIE)
    assert cookie
    browser.cookies.clear()
    return cookie


def test_a_login_link_sets_a_scoped_cookie_once(
    api: TestClient, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]]
) -> None:
    alice = people["alice"]
    refused = api.post(f"/v1/workspaces/{WS}/jupyter/login", headers=alice)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert grant(api, people["tester"], "alice", jupyter=True).status_code == 200
    link = login_link(api, alice)
    answer = browser.get(link)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/jupyter/{WS}/lab"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in answer.headers["cache-control"]
    set_cookie = answer.headers["set-cookie"]
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    assert attributes[0].startswith(COOKIE + "=")
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert f"path=/jupyter/{WS}/" in attributes
    assert "secure" not in attributes  # plain http here; a browser would drop a Secure cookie
    ticket = link.split("ticket=")[1]
    assert ticket not in set_cookie
    browser.cookies.clear()
    assert browser.get(link).status_code == 401  # single use
    assert browser.get(f"/jupyter/{WS}/devenv-login?ticket=made-up").status_code == 401
    assert browser.get(f"/jupyter/{WS}/devenv-login").status_code == 401
    assert upstream.seen == []


def test_a_link_for_one_workspace_does_not_open_another(
    api: TestClient, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    assert up(api, project_upload(tmp_path / "q", name="other"), "other")["workspace"]["state"] == "running"
    assert grant(api, people["tester"], "alice", jupyter=True).status_code == 200
    assert grant(api, people["tester"], "alice", jupyter=True, ws="other").status_code == 200
    link = login_link(api, people["alice"])
    assert browser.get(link.replace(f"/jupyter/{WS}/", "/jupyter/other/")).status_code == 401
    assert browser.get(link).status_code == 401  # the ticket was spent by the wrong try


def test_the_proxy_forwards_as_the_person_with_the_secret_and_nothing_of_the_browsers(
    api: TestClient, fake: FakeDaemon, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]]
) -> None:
    assert grant(api, people["tester"], "alice", jupyter=True).status_code == 200
    cookie = open_link(browser, login_link(api, people["alice"]))
    access = fake.daemon.services.access
    assert fake.backend.files(WS)[JUPYTER_SECRET_PATH] == (access.jupyter_secret(WS) + "\n").encode()
    secret = access.person_jupyter_secret(WS, "alice")  # her own JupyterLab's, derived from the workspace's
    assert secret != access.jupyter_secret(WS)

    answer = browser.get(
        f"/jupyter/{WS}/lab?reset=1",
        headers={
            "Cookie": f"{COOKIE}={cookie}; _xsrf=abc",
            "X-Devenv-Person": "mallory",
            "X-Devenv-Proxy-Secret": "guessed",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.text == f"GET /jupyter/{WS}/lab?reset=1 person=alice"
    assert answer.headers["x-upstream"] == "yes"
    seen = upstream.seen[-1]["headers"]
    assert seen["x-devenv-person"] == "alice"
    assert seen["x-devenv-proxy-secret"] == secret
    assert upstream.seen[-1]["all"].count("x-devenv-person") == 1
    assert upstream.seen[-1]["all"].count("x-devenv-proxy-secret") == 1
    assert seen["cookie"] == "_xsrf=abc"
    assert not any(COOKIE in str(request) for request in upstream.seen)
    assert "authorization" not in seen

    posted = browser.post(
        f"/jupyter/{WS}/api/contents",
        content=b'{"x":1}',
        headers={"Cookie": f"{COOKIE}={cookie}", "Origin": "http://testserver", "Content-Type": "application/json"},
    )
    assert posted.status_code == 200, posted.text
    last = upstream.seen[-1]
    assert last["method"] == "POST" and last["body"] == b'{"x":1}'
    assert last["headers"]["origin"] == f"http://{upstream.address[0]}:{upstream.address[1]}"
    assert "cookie" not in last["headers"]

    count = len(upstream.seen)
    assert browser.get(f"/jupyter/{WS}/lab").status_code == 401
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}=forged"}).status_code == 403
    foreign = browser.post(
        f"/jupyter/{WS}/api/contents",
        content=b"{}",
        headers={"Cookie": f"{COOKIE}={cookie}", "Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    assert len(upstream.seen) == count  # none of the refused ones reached JupyterLab

    with (
        pytest.raises(WebSocketDisconnect) as closed,
        browser.websocket_connect(f"/jupyter/{WS}/api/events/subscribe") as socket,
    ):
        socket.receive_text()
    assert closed.value.code == CLOSE_REVOKED


def test_a_session_cookie_is_for_its_own_workspace(
    api: TestClient,
    fake: FakeDaemon,
    browser: TestClient,
    upstream: Upstream,
    people: dict[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    assert up(api, project_upload(tmp_path / "q", name="other"), "other")["workspace"]["state"] == "running"
    fake.backend.services[("other", 8888)] = upstream.address
    fake.backend.services[("other", PERSON_PORT)] = upstream.address
    for ws in (WS, "other"):
        assert grant(api, people["tester"], "alice", jupyter=True, ws=ws).status_code == 200
    cookie = open_link(browser, login_link(api, people["alice"]))
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 200
    assert browser.get("/jupyter/other/lab", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 403


def test_revoking_cuts_the_cookie_off_at_once_and_spares_others(
    api: TestClient, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]]
) -> None:
    tester = people["tester"]
    assert grant(api, tester, "alice", jupyter=True).status_code == 200
    assert grant(api, tester, "bob", jupyter=True).status_code == 200
    alice = open_link(browser, login_link(api, people["alice"]))
    bob = open_link(browser, login_link(api, people["bob"]))
    owner = open_link(browser, login_link(api, tester))
    for cookie in (alice, bob, owner):
        assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 200
    assert revoke(api, tester, "alice").status_code == 200
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={alice}"}).status_code == 403
    for cookie, person in ((bob, "bob"), (owner, "tester")):
        answer = browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert answer.status_code == 200 and answer.text.endswith(f"person={person}")
    # granted again, the old cookie stays dead: she needs a new link
    assert grant(api, tester, "alice", jupyter=True).status_code == 200
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={alice}"}).status_code == 403


def test_narrowing_a_grant_to_ssh_drops_the_jupyter_session(
    api: TestClient, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]]
) -> None:
    assert grant(api, people["tester"], "alice", ssh=True, jupyter=True).status_code == 200
    cookie = open_link(browser, login_link(api, people["alice"]))
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 200
    assert grant(api, people["tester"], "alice", ssh=True).status_code == 200
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 403


def test_an_unused_login_link_dies_with_the_grant(
    api: TestClient, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]]
) -> None:
    assert grant(api, people["tester"], "alice", jupyter=True).status_code == 200
    link = login_link(api, people["alice"])
    assert revoke(api, people["tester"], "alice").status_code == 200
    assert browser.get(link).status_code == 401


def test_the_jupyter_secret_is_never_stored(
    api: TestClient,
    fake: FakeDaemon,
    browser: TestClient,
    upstream: Upstream,
    people: dict[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    assert grant(api, people["tester"], "alice", ssh=True, jupyter=True, ttl="1h").status_code == 200
    cookie = open_link(browser, login_link(api, people["alice"]))
    assert browser.get(f"/jupyter/{WS}/lab", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 200
    assert revoke(api, people["tester"], "alice").status_code == 200
    secret = fake.daemon.services.access.jupyter_secret(WS)
    assert upstream.seen[-1]["headers"]["x-devenv-proxy-secret"] == fake.daemon.services.access.person_jupyter_secret(
        WS, "alice"
    )
    folder = tmp_path / "daemon"
    stored = b"".join(path.read_bytes() for path in folder.glob("store.db*"))
    assert (folder / "store.db").exists() and len(stored) > 0
    assert secret.encode() not in stored and cookie.encode() not in stored
    # derived from the daemon's key, per workspace
    assert fake.daemon.services.access.jupyter_secret("other") != secret


def test_only_the_owner_or_an_admin_changes_a_workspaces_life(
    api: TestClient, workspace: str, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    alice, admin = people["alice"], people["root2"]
    for method, path in [
        ("POST", f"/v1/workspaces/{WS}/stop"),
        ("POST", f"/v1/workspaces/{WS}/start"),
        ("POST", f"/v1/workspaces/{WS}/rebuild"),
        ("DELETE", f"/v1/workspaces/{WS}"),
    ]:
        answer = api.request(method, path, headers=alice, json={} if "rebuild" in path else None)
        assert answer.status_code == 403 and answer.json()["code"] == "forbidden", (method, path, answer.text)
    taken = api.post("/v1/workspaces", json={**project_upload(tmp_path / "mine", name=WS), "name": None}, headers=alice)
    assert taken.status_code == 403 and "it is tester's" in taken.json()["message"]
    assert api.get(f"/v1/workspaces/{WS}").json()["state"] == "running"  # nothing changed

    # a grantee may wake it (start) but not stop or remove it; an admin may do all
    assert grant(api, people["tester"], "alice", jupyter=True).status_code == 200
    assert frames(api.post(f"/v1/workspaces/{WS}/start", headers=alice))[-1]["workspace"]["state"] == "running"
    assert api.post(f"/v1/workspaces/{WS}/stop", headers=alice).status_code == 403
    assert frames(api.post(f"/v1/workspaces/{WS}/stop", headers=admin))[-1]["workspace"]["state"] == "stopped"


def test_a_cookie_jupyterlab_sets_for_one_browser_never_reaches_another(
    api: TestClient, browser: TestClient, upstream: Upstream, people: dict[str, dict[str, str]]
) -> None:
    assert grant(api, people["tester"], "alice", jupyter=True).status_code == 200
    alice = open_link(browser, login_link(api, people["alice"]))
    first = browser.get(f"/jupyter/{WS}/lab", cookies={COOKIE: alice})
    assert first.status_code == 200 and "_xsrf=for-alice" in first.headers["set-cookie"]  # passed to her browser
    browser.cookies.clear()
    owner = open_link(browser, login_link(api, people["tester"]))
    assert browser.get(f"/jupyter/{WS}/lab", cookies={COOKIE: owner}).status_code == 200
    assert "cookie" not in upstream.seen[-1]["headers"], upstream.seen[-1]  # the proxy kept no jar


def sweeps_for(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch, person: str) -> list[threading.Event]:
    """Events set as each run of the access tool for `person` ending something has finished (the sweep at
    the revoke itself, then the late one): a test waits on the second instead of sleeping past it."""
    container = fake.daemon.services.access.container
    run_tool = container._run_tool
    finished = [threading.Event(), threading.Event()]
    count = iter(finished)

    def counted(backend: Any, handle: Any, workspace: str, ended: dict[str, set[str]], secrets_out: list[str]) -> None:
        try:
            run_tool(backend, handle, workspace, ended, secrets_out)
        finally:
            if person in ended:
                next(count, threading.Event()).set()

    monkeypatch.setattr(container, "_run_tool", counted)
    return finished


def test_the_late_session_sweep_spares_someone_granted_again(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = sweeps_for(fake, monkeypatch, "alice")
    assert grant(api, people["tester"], "alice", ssh=True).status_code == 200
    assert revoke(api, people["tester"], "alice").status_code == 200
    assert first.is_set()  # the revoke's own sweep ran before it answered
    assert grant(api, people["tester"], "alice", ssh=True).status_code == 200  # within the second
    assert second.wait(10), "the late sweep never ran"  # it has come and gone (and found her granted again)
    assert end_sessions(execs) == [["alice"]]  # only the sweep at the revoke itself


def test_the_late_sweep_ends_a_session_that_reached_the_workspace_after_the_first(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exec that was past the daemon's checks when the revoke came reaches the container only after the
    revoke's sweep: the sweep a second later is what ends it."""
    tester, alice = people["tester"], people["alice"]
    assert grant(api, tester, "alice", ssh=True).status_code == 200
    gid = fake.daemon.services.access.marker(WS, "alice").gid

    # the workspace's processes, as the fake plays them: `end-sessions --as GID` starts one that keeps running
    # with that marker group, `--kill-gid GID` ends each one holding it
    running: dict[int, int] = {}  # pid -> marker gid
    history: list[tuple[str, list[int]]] = []  # ("start", [pid]) and ("sweep", [pids ended]), in order
    handler = fake.backend.exec_handler
    assert handler is not None

    def processes(ws: str, argv: list[str]) -> ExecResult | None:
        args = argv[len(END_SESSIONS) :]
        if argv[: len(END_SESSIONS)] == END_SESSIONS and "--as" in args:
            pid = 100 + len(history)
            running[pid] = int(args[args.index("--as") + 1])
            history.append(("start", [pid]))
        elif argv[: len(END_SESSIONS)] == END_SESSIONS and "--kill-gid" in args:
            killed = {int(word) for before, word in itertools.pairwise(args) if before == "--kill-gid"}
            ended = sorted(pid for pid, held in running.items() if held in killed)
            for pid in ended:
                del running[pid]
            history.append(("sweep", ended))
        return handler(ws, argv)

    fake.backend.exec_handler = processes

    # alice's exec is held between the daemon's checks and the container until the revoke's sweep is done
    at_door, swept = threading.Event(), threading.Event()
    exec_in_container = fake.backend.exec

    def held(handle: Any, argv: list[str], **kwargs: Any) -> Any:
        if "--as" in argv:
            at_door.set()
            assert swept.wait(10)
        return exec_in_container(handle, argv, **kwargs)

    monkeypatch.setattr(fake.backend, "exec", held)
    answered: list[list[dict[str, Any]]] = []
    late = threading.Thread(
        target=lambda: answered.append(
            frames(api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["sleep", "600"]}, headers=alice))
        )
    )
    late.start()
    try:
        assert at_door.wait(10), "alice's exec never got past the daemon's checks"
        assert revoke(api, tester, "alice").status_code == 200
    finally:
        swept.set()
        late.join(10)
    assert not late.is_alive() and answered and answered[0][-1] == {"exit": 0}, answered
    # positive control: the revoke's own sweep came first and found nothing; then her process started
    assert [kind for kind, _ in history[:2]] == ["sweep", "start"] and history[0][1] == [], history
    (pid,) = history[1][1]
    assert running.get(pid) == gid or ("sweep", [pid]) in history  # hers (or already ended by the late sweep)

    deadline = time.monotonic() + 5
    while pid in running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pid not in running, f"alice's late process still runs 5s after the revoke: {history}"
    assert history[2:] == [("sweep", [pid])], history
    assert end_sessions(execs)[-2:] == [["alice"], ["alice"]]


# -- markers: what a grantee starts ends with their access --------------------------------------


def tool_runs(execs: list[tuple[str, list[str]]], flag: str) -> list[list[str]]:
    return [
        argv[len(END_SESSIONS) :] for _, argv in execs if argv[: len(END_SESSIONS)] == END_SESSIONS and flag in argv
    ]


def test_a_grantee_logs_in_and_execs_under_their_own_marker_and_the_owner_as_dev(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    tester, alice = people["tester"], people["alice"]
    assert grant(api, tester, "alice", ssh=True, jupyter=True).status_code == 200
    assert grant(api, tester, "bob", jupyter=True).status_code == 200
    marker = fake.daemon.services.access.marker(WS, "alice")
    bob = fake.daemon.services.access.marker(WS, "bob")
    assert marker.gid != bob.gid and {marker.gid, marker.jupyter_gid}.isdisjoint({bob.gid, bob.jupyter_gid})
    logins = fake.backend.files(WS)[LOGINS].decode().splitlines()
    assert logins[0] == "dev tester - ssh,jupyter"
    assert sorted(logins[1:]) == sorted(
        [f"{marker.login} alice {marker.gid} ssh,jupyter", f"{bob.login} bob {bob.gid} jupyter"]
    )
    assert marker.login.startswith("dv-alice-") and len(marker.login) <= 32
    assert tool_runs(execs, "--sync"), "a grant makes the workspace's logins match"

    _, mine = certificate_file(api, alice, key_pair(tmp_path, "alice"))
    assert mine["user"] == marker.login and mine["principal"] == "alice"
    _, own = certificate_file(api, tester, key_pair(tmp_path, "tester"))
    assert own["user"] == "dev"

    execs.clear()
    frames(api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["sleep", "9"], "env": {"A": "1"}}, headers=alice))
    frames(api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["sleep", "8"]}, headers=tester))
    assert [argv for _, argv in execs] == [
        [*END_SESSIONS, "--as", str(marker.gid), "A=1", "--", "sleep", "9"],
        ["sleep", "8"],
    ]


def test_revoking_kills_every_process_holding_the_persons_markers(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
) -> None:
    tester = people["tester"]
    assert grant(api, tester, "alice", ssh=True, jupyter=True).status_code == 200
    assert grant(api, tester, "bob", ssh=True).status_code == 200
    alice = fake.daemon.services.access.marker(WS, "alice")
    execs.clear()
    assert revoke(api, tester, "alice").status_code == 200
    (run,) = tool_runs(execs, "--kill-gid")
    assert run == ["--sync", "--kill-gid", str(alice.gid), "--kill-gid", str(alice.jupyter_gid), "alice"]
    # narrowing a grant ends only what it no longer allows
    assert grant(api, tester, "alice", ssh=True, jupyter=True).status_code == 200
    assert fake.daemon.services.access.marker(WS, "alice") == alice  # the same numbers, granted again
    execs.clear()
    assert grant(api, tester, "alice", ssh=True).status_code == 200
    assert tool_runs(execs, "--kill-gid") == [["--sync", "--kill-gid", str(alice.jupyter_gid), "alice"]]


def test_markers_are_stable_and_distinct() -> None:
    from devenv.access.markers import GID_BASE, GID_PAIRS, assign

    people = [f"person{n}" for n in range(300)]
    first = assign(people)
    assert assign(people) == first
    gids = [marker.gid for marker in first.values()]
    assert len(set(gids)) == len(gids) and all(GID_BASE <= gid < GID_BASE + 2 * GID_PAIRS - 1 for gid in gids)
    assert all(gid % 2 == 0 for gid in gids)  # gid + 1 is the same person's Jupyter marker
    assert assign(people[:10]) == {person: first[person] for person in people[:10]}  # later grants move nobody
    assert first["person1"].login == f"dv-person1-{first['person1'].gid}"
    assert assign(["Ann.Lee@x+y"])["Ann.Lee@x+y"].login.startswith("dv-ann-lee-x-y-")


def test_a_grant_takes_the_owners_own_secrets_out_unless_shared(
    api: TestClient,
    fake: FakeDaemon,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    secrets = fake.daemon.services.secrets
    assert secrets is not None
    from devenv.daemon.services.access import Caller

    secrets.set(Caller("tester", admin=True), "API_SECRET", "owner-own")
    secrets.set(Caller("tester", admin=True), "TEAM_KEY", "team-value", team=True)
    upload = project_upload(tmp_path / "p", name=WS, edit={"ssh: true": "ssh: true\nsecrets: [API_SECRET, TEAM_KEY]"})
    assert up(api, upload, WS)["workspace"]["state"] == "running"
    assert set(fake.backend.secrets(WS)) == {"API_SECRET", "TEAM_KEY", "env"}
    execs.clear()
    assert grant(api, people["tester"], "alice", ssh=True).status_code == 200
    (run,) = tool_runs(execs, "--drop-secret")
    assert run == ["--sync", "--drop-secret", "API_SECRET"]  # the team's stay
    placed = api.get(f"/v1/workspaces/{WS}").json()["setup"]["secrets"]
    assert placed["delivered"] == ["TEAM_KEY"] and placed["withheld"] == ["API_SECRET"]
    # the next start places the team's only, while the grant lives
    assert frames(api.post(f"/v1/workspaces/{WS}/stop"))[-1]["workspace"]["state"] == "stopped"
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    assert set(fake.backend.secrets(WS)) == {"TEAM_KEY", "env"}
    assert b"owner-own" not in b"".join(fake.backend.secrets(WS).values())
    # ended, the owner's own come back at the next start
    assert revoke(api, people["tester"], "alice").status_code == 200
    assert frames(api.post(f"/v1/workspaces/{WS}/stop"))[-1]["workspace"]["state"] == "stopped"
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    assert set(fake.backend.secrets(WS)) == {"API_SECRET", "TEAM_KEY", "env"}


def test_share_secrets_keeps_the_owners_own_in_place(
    api: TestClient,
    fake: FakeDaemon,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    from devenv.daemon.services.access import Caller

    secrets = fake.daemon.services.secrets
    assert secrets is not None
    secrets.set(Caller("tester", admin=True), "API_SECRET", "owner-own")
    upload = project_upload(tmp_path / "p", name=WS, edit={"ssh: true": "ssh: true\nsecrets: [API_SECRET]"})
    assert up(api, upload, WS)["workspace"]["state"] == "running"
    given = grant(api, people["tester"], "alice", ssh=True, share_secrets=True)
    assert given.status_code == 200 and given.json()["share_secrets"] is True
    assert tool_runs(execs, "--drop-secret") == []
    assert frames(api.post(f"/v1/workspaces/{WS}/stop"))[-1]["workspace"]["state"] == "stopped"
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    assert set(fake.backend.secrets(WS)) == {"API_SECRET", "env"}


def test_a_revoke_and_exec_reach_a_workspace_whose_hook_failed(
    api: TestClient,
    fake: FakeDaemon,
    workspace: str,
    people: dict[str, dict[str, str]],
    execs: list[tuple[str, list[str]]],
) -> None:
    """A failed hook keeps its container up (to be fixed from inside): access must still be ended there."""
    from sqlalchemy import update

    from devenv.daemon.store.tables import Workspace

    assert grant(api, people["tester"], "alice", ssh=True).status_code == 200
    with fake.daemon.services.workspaces.sessions.begin() as session:
        session.execute(update(Workspace).where(Workspace.name == WS).values(state="failed", error_code="hook_failed"))
    assert revoke(api, people["tester"], "alice").status_code == 200
    assert admitted(fake.backend.files(WS)) == ["tester"]
    assert end_sessions(execs) == [["alice"]]
    ran = api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["true"]})
    assert ran.status_code == 200, ran.text  # the owner gets in to fix the hook
    with fake.daemon.services.workspaces.sessions.begin() as session:
        session.execute(update(Workspace).where(Workspace.name == WS).values(error_code="build_failed"))
    assert api.post(f"/v1/workspaces/{WS}/exec", json={"argv": ["true"]}).status_code == 409  # failed otherwise
