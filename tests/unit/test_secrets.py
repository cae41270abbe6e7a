"""Secrets: the key file, encryption at rest, scopes and who may change them, the API, the client and the CLI."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets as random
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from devenv.cli.main import main
from devenv.client import Client
from devenv.daemon.services.access import Caller
from devenv.daemon.services.secrets import KEY_FILE_ENV, MAX_VALUE, SecretBox, Secrets, key_path
from devenv.daemon.services.tokens import local_actor
from devenv.daemon.store.db import MIGRATIONS, make_engine, migrate
from devenv.errors import SecretKeyError, SecretNotFound, UsageError, error_from_payload
from devenv.testing.daemon import FakeDaemon, fake_daemon
from devenv.testing.served import served_fake_daemon

ALICE, BOB, ADMIN = Caller("alice"), Caller("bob"), Caller("root2", admin=True)


def distinctive() -> str:
    return "s3cr3t-" + random.token_hex(16)


def b64_forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(raw).rstrip(b"=")]


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


@pytest.fixture
def service(fake: FakeDaemon) -> Secrets:
    assert fake.daemon.services.secrets is not None
    return fake.daemon.services.secrets


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


@pytest.fixture
def people(fake: FakeDaemon) -> dict[str, dict[str, str]]:
    """Authorization headers for tester (not an admin), alice, bob, and root2 (an admin token)."""
    tokens = fake.daemon.services.tokens
    made = {"alice": tokens.create("alice"), "bob": tokens.create("bob"), "root2": tokens.create("root2", admin=True)}
    return {"tester": fake.headers, **{name: {"Authorization": f"Bearer {token}"} for name, token in made.items()}}


def put(api: TestClient, headers: dict[str, str], name: str, value: Any, *, team: bool = False) -> Any:
    return api.put(f"/v1/secrets/{name}", json={"value": value, "team": team}, headers=headers)


def names(api: TestClient, headers: dict[str, str]) -> list[tuple[str, str, str | None]]:
    answer = api.get("/v1/secrets", headers=headers)
    assert answer.status_code == 200, answer.text
    return [(item["name"], item["scope"], item["person"]) for item in answer.json()["items"]]


# -- the key file --------------------------------------------------------------------------------


def test_the_key_file_is_made_0600_from_its_first_byte_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "home" / "secrets.key"
    seen: list[int] = []
    real_link = os.link

    def link(source: Any, target: Any) -> None:  # the moment the key gets its name
        seen.append(stat.S_IMODE(os.stat(source).st_mode))
        real_link(source, target)

    monkeypatch.setattr(os, "link", link)
    previous = os.umask(0)  # a careless umask must not widen it
    try:
        sealed = SecretBox(path).encrypt(b"hello")
    finally:
        os.umask(previous)
    assert seen == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secrets.key"]  # no staging file left behind
    Fernet(path.read_bytes().strip())  # a real Fernet key
    assert SecretBox(path).decrypt(sealed) == b"hello"  # kept: a new box (a restarted daemon) opens it


def test_the_key_file_is_in_the_home_unless_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "h"))
    assert key_path() == tmp_path / "h" / "secrets.key"
    assert SecretBox().path == tmp_path / "h" / "secrets.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "elsewhere.key"))
    assert key_path(tmp_path / "h") == tmp_path / "elsewhere.key"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_others_may_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secrets.key"
    path.write_bytes(Fernet.generate_key())
    path.chmod(mode)
    with pytest.raises(SecretKeyError) as refused:
        SecretBox(path).encrypt(b"x")
    assert str(path) in refused.value.message and f"{mode:04o}" in refused.value.message
    assert refused.value.hint == f"chmod 600 {path}"
    path.chmod(0o600)
    assert SecretBox(path).decrypt(SecretBox(path).encrypt(b"x")) == b"x"


def test_a_key_file_that_holds_no_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    path.write_bytes(b"not a key\n")
    path.chmod(0o600)
    with pytest.raises(SecretKeyError, match="does not hold a secrets key"):
        SecretBox(path).encrypt(b"x")


def test_a_replaced_key_file_gives_a_clear_error(fake: FakeDaemon, service: Secrets, tmp_path: Path) -> None:
    service.set(ALICE, "WANDB_API_KEY", distinctive())
    path = service.box.path
    assert path == tmp_path / "daemon" / "secrets.key" and path.exists()
    path.write_bytes(Fernet.generate_key())  # someone replaced the key; the daemon restarts
    restarted = Secrets(service.sessions, service.events, SecretBox(path))
    with pytest.raises(SecretKeyError) as failed:
        restarted.resolve("alice", ["WANDB_API_KEY"])
    assert "replaced" in failed.value.message and str(path) in failed.value.message
    assert failed.value.hint and "backup" in failed.value.hint


def test_a_lost_key_file_is_not_silently_replaced_while_secrets_need_it(service: Secrets) -> None:
    service.set(ALICE, "GIT_TOKEN", "one")
    service.box.path.unlink()  # lost; the daemon restarts
    restarted = Secrets(service.sessions, service.events, SecretBox(service.box.path))
    with pytest.raises(SecretKeyError) as refused:
        restarted.set(BOB, "HF_TOKEN", "two")
    assert "missing" in refused.value.message and "1 secret " in refused.value.message
    assert not service.box.path.exists()  # no new key was made
    restarted.remove(ALICE, "GIT_TOKEN")  # removing needs no key; then setting makes a new one
    assert restarted.set(BOB, "HF_TOKEN", "two")["name"] == "HF_TOKEN" and service.box.path.exists()
    assert restarted.resolve("bob", ["HF_TOKEN"]).values == {"HF_TOKEN": "two"}


# -- the store -----------------------------------------------------------------------------------


def test_the_store_holds_neither_a_value_nor_its_base64(
    api: TestClient, fake: FakeDaemon, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    mine, team = distinctive(), distinctive()
    assert put(api, people["alice"], "WANDB_API_KEY", mine).status_code == 200
    assert put(api, people["root2"], "HF_TOKEN", team, team=True).status_code == 200
    database = sqlite3.connect(tmp_path / "daemon" / "store.db")
    rows = database.execute("select name, scope, person, ciphertext, updated_by from secrets order by name").fetchall()
    database.close()
    assert [row[:3] for row in rows] == [("HF_TOKEN", "team", ""), ("WANDB_API_KEY", "person", "alice")]
    cells = "\n".join(str(cell) for row in rows for cell in row).encode()
    for value in (mine, team):
        assert value.encode() not in cells
        for form in b64_forms(value):
            assert form not in cells
    stored = b"".join(path.read_bytes() for path in (tmp_path / "daemon").glob("store.db*"))
    assert b"WANDB_API_KEY" in stored  # the check below looks where the rows are
    assert mine.encode() not in stored and team.encode() not in stored
    assert fake.daemon.services.secrets is not None
    assert fake.daemon.services.secrets.resolve("alice", ["WANDB_API_KEY"]).values == {"WANDB_API_KEY": mine}


def test_a_ciphertext_moved_to_another_row_is_refused(service: Secrets, tmp_path: Path) -> None:
    service.set(ALICE, "GIT_TOKEN", "alices")
    service.set(BOB, "GIT_TOKEN", "bobs")
    database = sqlite3.connect(tmp_path / "daemon" / "store.db")
    with database:
        database.execute(
            "update secrets set ciphertext = (select ciphertext from secrets where person = 'alice') "
            "where person = 'bob'"
        )
    database.close()
    assert service.resolve("alice", ["GIT_TOKEN"]).values == {"GIT_TOKEN": "alices"}
    with pytest.raises(SecretKeyError, match="sealed for another row"):
        service.resolve("bob", ["GIT_TOKEN"])


def test_the_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    assert "secrets" in inspect(engine).get_table_names()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    assert "secrets" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "secrets" in inspect(engine).get_table_names()


# -- the service ---------------------------------------------------------------------------------


def test_resolve_takes_the_owners_own_then_the_teams_and_lists_what_is_missing(service: Secrets) -> None:
    service.set(ADMIN, "WANDB_API_KEY", "team-wandb", team=True)
    service.set(ADMIN, "HF_TOKEN", "team-hf", team=True)
    service.set(ALICE, "WANDB_API_KEY", "alice-wandb")
    service.set(BOB, "GIT_TOKEN", "bob-git")
    wanted = ["WANDB_API_KEY", "HF_TOKEN", "GIT_TOKEN", "AWS_SECRET_ACCESS_KEY"]
    alice = service.resolve("alice", wanted)
    assert alice.values == {"WANDB_API_KEY": "alice-wandb", "HF_TOKEN": "team-hf"}
    assert alice.missing == ["GIT_TOKEN", "AWS_SECRET_ACCESS_KEY"]  # bob's own is not hers
    bob = service.resolve("bob", [*wanted, "GIT_TOKEN"])
    assert bob.values == {"WANDB_API_KEY": "team-wandb", "HF_TOKEN": "team-hf", "GIT_TOKEN": "bob-git"}
    assert bob.missing == ["AWS_SECRET_ACCESS_KEY"]
    assert "alice-wandb" not in repr(alice)  # a log line of the result shows no value
    service.remove(ALICE, "WANDB_API_KEY")
    assert service.resolve("alice", ["WANDB_API_KEY"]).values == {"WANDB_API_KEY": "team-wandb"}
    assert service.resolve("alice", []).values == {}


def test_setting_again_replaces_the_value(service: Secrets) -> None:
    first = service.set(ALICE, "GIT_TOKEN", "one")
    second = service.set(ALICE, "GIT_TOKEN", "two")
    assert service.resolve("alice", ["GIT_TOKEN"]).values == {"GIT_TOKEN": "two"}
    assert second["updated_at"] >= first["updated_at"]
    assert [item["name"] for item in service.list(ALICE)] == ["GIT_TOKEN"]


@pytest.mark.parametrize("name", ["lower", "1ABC", "A-B", "", "A" * 129, "WANDB API KEY"])
def test_a_bad_name_is_a_usage_error(service: Secrets, name: str) -> None:
    with pytest.raises(UsageError) as refused:
        service.set(ALICE, name, "x")
    assert refused.value.hint and "WANDB_API_KEY" in refused.value.hint
    assert service.list(ALICE) == []


def test_a_bad_value_is_a_usage_error_that_never_quotes_it(service: Secrets) -> None:
    service.set(ALICE, "A" * 128, "x" * MAX_VALUE)  # the limits themselves are fine
    too_big = distinctive() + "x" * MAX_VALUE
    for value in ("", too_big, distinctive() + "\0"):
        with pytest.raises(UsageError) as refused:
            service.set(ALICE, "GIT_TOKEN", value)
        if value:
            assert value[:20] not in refused.value.render()
        else:
            assert "empty" in refused.value.message
    assert [item["name"] for item in service.list(ALICE)] == ["A" * 128]


# -- the API -------------------------------------------------------------------------------------


def test_every_secret_route_needs_a_caller(fake: FakeDaemon) -> None:
    with TestClient(fake.app) as anonymous:
        for method, path, body in [
            ("GET", "/v1/secrets", None),
            ("PUT", "/v1/secrets/GIT_TOKEN", {"value": "x"}),
            ("DELETE", "/v1/secrets/GIT_TOKEN", None),
        ]:
            answer = anonymous.request(method, path, json=body)
            assert answer.status_code == 401 and answer.json()["code"] == "unauthorized", (method, answer.text)
            wrong = anonymous.request(method, path, json=body, headers={"Authorization": "Bearer dvt_wrong"})
            assert wrong.status_code == 401, method
        assert anonymous.get("/v1/secrets", headers=fake.headers).status_code == 200
        published = anonymous.get("/v1/openapi.json", headers=fake.headers).json()["paths"]
        assert {"get"} <= set(published["/v1/secrets"]) and {"put", "delete"} <= set(published["/v1/secrets/{name}"])
    assert fake.daemon.services.secrets is not None
    assert fake.daemon.services.secrets.resolve("tester", ["GIT_TOKEN"]).missing == ["GIT_TOKEN"]


def test_only_an_admin_sets_or_removes_team_secrets(api: TestClient, people: dict[str, dict[str, str]]) -> None:
    refused = put(api, people["tester"], "HF_TOKEN", "x", team=True)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert "admin" in refused.json()["message"] and "--team" in refused.json()["hint"]
    assert names(api, people["tester"]) == []
    made = put(api, people["root2"], "HF_TOKEN", "x", team=True)
    assert made.status_code == 200, made.text
    assert set(made.json()) == {"name", "scope", "person", "updated_at", "updated_by"}  # no value
    assert (made.json()["scope"], made.json()["person"], made.json()["updated_by"]) == ("team", None, "root2")
    for who in ("tester", "alice"):  # everyone sees the team's
        assert names(api, people[who]) == [("HF_TOKEN", "team", None)]
    denied = api.delete("/v1/secrets/HF_TOKEN", params={"team": "true"}, headers=people["alice"])
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    not_hers = api.delete("/v1/secrets/HF_TOKEN", headers=people["alice"])  # she has no own HF_TOKEN
    assert not_hers.status_code == 404 and not_hers.json()["code"] == "secret_not_found"
    assert "--team" in not_hers.json()["message"]
    gone = api.delete("/v1/secrets/HF_TOKEN", params={"team": "true"}, headers=people["root2"])
    assert gone.status_code == 200 and gone.json() == {"removed": "HF_TOKEN"}
    assert names(api, people["alice"]) == []


def test_a_personal_secret_is_its_owners_alone(
    api: TestClient, service: Secrets, people: dict[str, dict[str, str]]
) -> None:
    alices, bobs = distinctive(), distinctive()
    assert put(api, people["alice"], "GIT_TOKEN", alices).status_code == 200
    assert names(api, people["alice"]) == [("GIT_TOKEN", "person", "alice")]
    for who in ("bob", "tester", "root2"):  # an admin sees the team's and their own, not others'
        assert names(api, people[who]) == [], who
    missing = api.delete("/v1/secrets/GIT_TOKEN", headers=people["bob"])
    assert missing.status_code == 404 and missing.json()["code"] == "secret_not_found"
    assert put(api, people["bob"], "GIT_TOKEN", bobs).status_code == 200
    assert names(api, people["bob"]) == [("GIT_TOKEN", "person", "bob")]
    assert service.resolve("alice", ["GIT_TOKEN"]).values == {"GIT_TOKEN": alices}
    assert service.resolve("bob", ["GIT_TOKEN"]).values == {"GIT_TOKEN": bobs}
    assert api.delete("/v1/secrets/GIT_TOKEN", headers=people["bob"]).status_code == 200
    assert service.resolve("alice", ["GIT_TOKEN"]).values == {"GIT_TOKEN": alices}  # hers stays


def test_a_malformed_request_never_echoes_the_value(
    api: TestClient, service: Secrets, people: dict[str, dict[str, str]]
) -> None:
    value = distinctive()
    for body in (
        {"value": {"nested": value}},
        {"value": [value]},
        {"value": 42, "note": value},
        {"value": value, "team": f"maybe {value}"},
    ):
        answer = api.put("/v1/secrets/GIT_TOKEN", json=body, headers=people["alice"])
        assert answer.status_code == 422, body
        assert value not in answer.text, answer.text
        payload = answer.json()
        assert payload["code"] == "usage" and payload["message"].startswith("the daemon refused a malformed request")
        assert payload["errors"] and all(set(error) == {"loc", "msg", "type"} for error in payload["errors"])
        assert payload["errors"][0]["loc"][:2] in (["body", "value"], ["body", "team"])
        assert isinstance(error_from_payload(payload), UsageError)
    broken = api.put(
        "/v1/secrets/GIT_TOKEN",
        content=f'{{"value": "{value}'.encode(),
        headers={**people["alice"], "Content-Type": "application/json"},
    )
    assert broken.status_code == 422 and value not in broken.text
    for bad in ("", "x" * (MAX_VALUE + 1) + value):  # checked by the service: a 400, also without the value
        refused = put(api, people["alice"], "GIT_TOKEN", bad)
        assert refused.status_code == 400 and refused.json()["code"] == "usage"
        assert value not in refused.text
    assert service.list(ALICE) == []


def test_events_record_who_changed_which_secret_and_never_a_value(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    mine, team = distinctive(), distinctive()
    assert put(api, people["alice"], "GIT_TOKEN", mine).status_code == 200
    assert put(api, people["root2"], "HF_TOKEN", team, team=True).status_code == 200
    assert api.delete("/v1/secrets/GIT_TOKEN", headers=people["alice"]).status_code == 200
    answer = api.get("/v1/events", headers=people["root2"])  # an admin reads them all
    assert answer.status_code == 200
    said = [(event["actor"], event["message"]) for event in answer.json()["items"] if "secret" in event["message"]]
    assert said == [
        ("alice", "secret set GIT_TOKEN (personal)"),
        ("root2", "secret set HF_TOKEN (team)"),
        ("alice", "secret removed GIT_TOKEN (personal)"),
    ]
    # a member reads what they did, never another person's secret names
    own = [event["message"] for event in api.get("/v1/events", headers=people["alice"]).json()["items"]]
    assert own == ["secret set GIT_TOKEN (personal)", "secret removed GIT_TOKEN (personal)"]
    assert not [event for event in api.get("/v1/events").json()["items"] if "GIT_TOKEN" in event["message"]]
    for value in (mine, team):
        assert value not in answer.text
        assert not any(form.decode() in answer.text for form in b64_forms(value))


# -- the client and the CLI against a served daemon ----------------------------------------------


@pytest.fixture
def daemon(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeDaemon, Client]]:
    """A fake daemon on a unix socket (its caller: the local admin), and the CLI pointed at it."""
    monkeypatch.setenv("DEVENV_HOME", str(folder / "home"))
    monkeypatch.delenv("DEVENV_DEBUG", raising=False)
    with served_fake_daemon(folder / "d") as (fake, client):
        monkeypatch.setenv("DEVENV_HOST", f"unix://{folder / 'd' / 'd.sock'}")
        yield fake, client


def cli(
    capsys: pytest.CaptureFixture[str],
    *args: str,
    stdin: str | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, str, str]:
    """Run `devenv ARGS` in-process, `stdin` piped in: (exit code, stdout, stderr)."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else code), captured.out, captured.err


def test_the_client_sets_lists_and_removes(daemon: tuple[FakeDaemon, Client]) -> None:
    fake, client = daemon
    item = client.set_secret("GIT_TOKEN", "t0k", team=True)
    assert (item["name"], item["scope"], item["updated_by"]) == ("GIT_TOKEN", "team", local_actor())
    assert [entry["name"] for entry in client.secrets()] == ["GIT_TOKEN"]
    assert client.remove_secret("GIT_TOKEN", team=True) == {"removed": "GIT_TOKEN"}
    with pytest.raises(SecretNotFound):  # the code round-trips to the same class
        client.remove_secret("GIT_TOKEN", team=True)
    with pytest.raises(UsageError):
        client.set_secret("git_token", "x")
    assert fake.daemon.services.secrets is not None
    assert fake.daemon.services.secrets.list(Caller(local_actor())) == []


def test_secret_set_ls_rm_from_stdin(
    daemon: tuple[FakeDaemon, Client], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = daemon
    service = fake.daemon.services.secrets
    assert service is not None
    value = distinctive()
    code, out, err = cli(capsys, "secret", "set", "WANDB_API_KEY", stdin=f"{value}\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert "WANDB_API_KEY set" in out and value not in out + err
    assert service.resolve(local_actor(), ["WANDB_API_KEY"]).values == {"WANDB_API_KEY": value}  # one \n less
    code, _, err = cli(capsys, "secret", "set", "PEM", stdin="line one\nline two\n\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert service.resolve(local_actor(), ["PEM"]).values == {"PEM": "line one\nline two\n"}
    code, out, err = cli(capsys, "secret", "set", "HF_TOKEN", "--team", stdin="hf", monkeypatch=monkeypatch)
    assert code == 0 and "for the team" in out, err

    code, out, err = cli(capsys, "secret", "ls")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "UPDATED", "BY"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["HF_TOKEN", "team"],
        ["PEM", "person"],
        ["WANDB_API_KEY", "person"],
    ]
    assert all(line.split()[-1] == local_actor() for line in lines[1:])
    assert value not in out
    code, out, _ = cli(capsys, "secret", "ls", "--json")
    assert code == 0 and [item["name"] for item in json.loads(out)] == ["HF_TOKEN", "PEM", "WANDB_API_KEY"]

    code, out, err = cli(capsys, "secret", "rm", "WANDB_API_KEY")
    assert code == 0 and "removed WANDB_API_KEY" in out, err
    assert service.resolve(local_actor(), ["WANDB_API_KEY"]).missing == ["WANDB_API_KEY"]
    code, out, err = cli(capsys, "secret", "rm", "WANDB_API_KEY")
    assert code == 1 and "secret_not_found" in err and "Traceback" not in err
    code, _, err = cli(capsys, "secret", "rm", "HF_TOKEN", "--team")
    assert code == 0, err
    assert [item["name"] for item in service.list(Caller(local_actor(), admin=True))] == ["PEM"]


@pytest.mark.parametrize("piped", ["", "\n", "\r\n"])
def test_secret_set_with_an_empty_value_exits_2_and_sets_nothing(
    daemon: tuple[FakeDaemon, Client], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, piped: str
) -> None:
    _, client = daemon
    code, out, err = cli(capsys, "secret", "set", "GIT_TOKEN", stdin=piped, monkeypatch=monkeypatch)
    assert code == 2, (out, err)
    assert "empty" in err and "Traceback" not in err
    assert client.secrets() == []


def test_secret_set_refuses_a_bad_name_before_asking_for_a_value(
    daemon: tuple[FakeDaemon, Client], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = daemon

    class Unread(io.StringIO):
        def read(self, *args: Any) -> str:
            raise AssertionError("stdin was read for a name that cannot be set")

    monkeypatch.setattr("sys.stdin", Unread())
    code, _, err = cli(capsys, "secret", "set", "wandb-key")
    assert code == 2 and "not a secret name" in err
    assert client.secrets() == []


def test_secret_set_on_a_terminal_asks_twice_without_echo(
    daemon: tuple[FakeDaemon, Client], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = daemon
    asked: list[dict[str, Any]] = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def prompt(text: str, **options: Any) -> str:
        asked.append({"text": text, **options})
        return "typed-value"

    monkeypatch.setattr("sys.stdin", Terminal("piped-value"))
    monkeypatch.setattr(click, "prompt", prompt)
    code, out, err = cli(capsys, "secret", "set", "GIT_TOKEN")
    assert code == 0, err
    assert len(asked) == 1 and asked[0]["hide_input"] is True and asked[0]["confirmation_prompt"] is True
    assert "GIT_TOKEN" in asked[0]["text"] and "typed-value" not in out + err
    assert fake.daemon.services.secrets is not None
    assert fake.daemon.services.secrets.resolve(local_actor(), ["GIT_TOKEN"]).values == {"GIT_TOKEN": "typed-value"}
