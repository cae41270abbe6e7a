"""Code, data and records through the daemon (real store, real app, a FakeBackend whose exec answers the
setup scripts like a workspace would): setup at start, status, data pull, snapshots, up from a snapshot,
who may do which, and the client and CLI against a served daemon."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.backends.base import ExecStream, Handle
from devenv.build.verify import record_verified
from devenv.cli.main import main
from devenv.client import Client
from devenv.daemon.services.tokens import local_actor
from devenv.errors import SnapshotNotFound, WorkspaceBusy, error_from_payload
from devenv.testing.daemon import FakeDaemon, fake_daemon, project_upload
from devenv.testing.fake_backend import ExecResult, FakeBackend
from devenv.testing.served import served_fake_daemon
from devenv.versioning import scripts
from devenv.versioning.env import SECRETS_ENV_NAME, WORKSPACE_ENV_PATH
from devenv.versioning.facts import data_hash, data_outs

WS = "versioned"
URL = "https://git.example.com/team/proj.git"
COMMIT = "0a1b2c3d4e5f" + "6" * 28
DVC_FILES = {
    "data/train.csv.dvc": "outs:\n- md5: 5f0e1d2c3b4a59687766554433221100\n  size: 9000\n  path: train.csv\n",
    "data/labels.txt.dvc": "outs:\n- md5: 00112233445566778899aabbccddeeff\n  size: 12\n  path: labels.txt\n",
}
DATA_HASH = data_hash(data_outs(DVC_FILES)) or ""
VERSIONED = f"""\
repo:
  url: {URL}
  token_secret: GIT_TOKEN
data:
  remote: s3://bucket/store
  endpoint: http://minio.example:9000
  paths: [data]
tracking:
  wandb:
    project: exp
    entity: team
secrets: [API_SECRET]
"""
AUTH_FAILED = (
    12,
    b"Cloning into '/home/dev/.devenv-clone-proj'...\n",
    b"remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://git.example.com/team/proj.git/'\n",
)


@dataclass
class Inside:
    """What the workspaces' insides answer: setup scripts by what they run, the facts as a JSON document.

    `clone` and `pull` hold each answer (per workspace when a dict names it); `calls` what was run, in order,
    as (workspace, "clone" | "pull" | "facts", the script or the facts script's repo argument).
    """

    clone: ExecResult = (0, b"Cloning into '/home/dev/.devenv-clone-proj'...\n", b"")
    pull: ExecResult = (0, b"A       data/train.csv\n2 files fetched\n", b"")
    per_workspace: dict[str, dict[str, ExecResult]] = field(default_factory=dict)
    dirty: bool = False
    dvc_files: dict[str, str] = field(default_factory=lambda: dict(DVC_FILES))
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    cloned: set[str] = field(default_factory=set)
    unknown: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, workspace: str, argv: list[str]) -> ExecResult | None:
        with self.lock:
            if len(argv) == 5 and argv[:2] == ["bash", "-c"] and argv[3] == "devenv-setup":
                assert argv == scripts.as_dev(argv[4])  # the wrapper runs it as dev, logged to PID 1
                script = argv[4]
                kind = "clone" if "git clone" in script else "pull" if "dvc pull" in script else "other"
                self.calls.append((workspace, kind, script))
                answer = self.per_workspace.get(workspace, {}).get(kind) or getattr(self, kind, (99, b"", b"?"))
                if kind == "clone" and workspace in self.cloned:  # as the script finds it: never cloned again
                    answer = (scripts.CLONE_PRESENT, b"devenv: /home/dev/proj is a clone already\n", b"")
                if kind == "clone" and answer[0] == 0:
                    self.cloned.add(workspace)
                return answer
            if argv[:3] == ["python3", "-c", scripts.FACTS_PY]:
                self.calls.append((workspace, "facts", argv[3]))
                document: dict[str, Any] = {"repo": None, "dvc_files": {}, "wandb_runs": []}
                if workspace in self.cloned:
                    document = {
                        "repo": {
                            "commit": COMMIT,
                            "branch": "main",
                            "upstream": "origin/main",
                            "ab": "+0 -0",
                            "dirty": self.dirty,
                            "changes": 3 if self.dirty else 0,
                            "diff_hash": "d" * 64 if self.dirty else None,
                            "remote": URL,
                        },
                        "dvc_files": self.dvc_files,
                        "wandb_runs": ["run1abc"],
                    }
                return 0, json.dumps(document).encode(), b""
            if argv and argv[0] in ("bash", "python3") and any("devenv" in word for word in argv):
                self.unknown.append(list(argv))  # a setup step this fake does not recognize
            return None

    def kinds(self, workspace: str) -> list[str]:
        return [kind for name, kind, _ in self.calls if name == workspace]

    def scripts_of(self, workspace: str, kind: str) -> list[str]:
        return [script for name, what, script in self.calls if name == workspace and what == kind]


class RecordingBackend(FakeBackend):
    """A FakeBackend that also notes the user each command ran as."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.users: list[tuple[str, str]] = []  # (argv[0] + argv[1], user)

    def exec(
        self,
        handle: Handle,
        argv: list[str],
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
        workdir: str = "/home/dev",
    ) -> ExecStream:
        self.users.append((" ".join(argv[:2]), user))
        return super().exec(handle, argv, user=user, env=env, workdir=workdir)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def inside() -> Inside:
    return Inside()


@pytest.fixture
def fake(tmp_path: Path, inside: Inside) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon", RecordingBackend("local", exec_handler=inside))


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app, headers=fake.headers) as client:
        yield client


@pytest.fixture
def people(fake: FakeDaemon) -> dict[str, dict[str, str]]:
    """Authorization headers for tester (the owner of what `api` makes), alice and bob."""
    tokens = fake.daemon.services.tokens
    made = {"alice": tokens.create("alice"), "bob": tokens.create("bob")}
    return {"tester": fake.headers, **{name: {"Authorization": f"Bearer {token}"} for name, token in made.items()}}


def frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def upload_of(folder: Path, name: str = WS, extra: str = VERSIONED) -> dict[str, Any]:
    return project_upload(folder, name=name, edit={"autostop: 30m\n": "autostop: 30m\n" + extra})


def up(
    api: TestClient, upload: dict[str, Any], name: str | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return frames(api.post("/v1/workspaces", json={**upload, "name": name}, headers=headers))[-1]


def set_secret(api: TestClient, name: str, value: str, headers: dict[str, str] | None = None) -> None:
    answer = api.put(f"/v1/secrets/{name}", json={"value": value, "team": False}, headers=headers)
    assert answer.status_code == 200, answer.text


def events(api: TestClient, workspace: str) -> list[str]:
    return [event["message"] for event in api.get("/v1/events", params={"workspace": workspace}).json()["items"]]


@pytest.fixture
def versioned(api: TestClient, tmp_path: Path, people: dict[str, dict[str, str]]) -> dict[str, Any]:
    """WS, up with its repo cloned and data pulled; GIT_TOKEN and API_SECRET set, WANDB_API_KEY not."""
    set_secret(api, "GIT_TOKEN", "tester-token")
    set_secret(api, "API_SECRET", 'it\'s "secret" $HOME')
    set_secret(api, "GIT_TOKEN", "alices-token", people["alice"])  # another person's: never handed to WS
    last = up(api, upload_of(tmp_path / "p"))
    assert last["workspace"]["state"] == "running", last
    return last["workspace"]


# -- setup at start ------------------------------------------------------------------------------


def test_up_clones_pulls_and_reads_the_facts(
    api: TestClient, fake: FakeDaemon, inside: Inside, versioned: dict[str, Any]
) -> None:
    assert inside.kinds(WS) == ["facts", "clone", "pull", "facts"]  # no clone there yet: clone, pull, read
    assert inside.unknown == []
    clone = inside.scripts_of(WS, "clone")[0]
    assert shlex.quote(URL) in clone and "checkout" not in clone  # no pin: the default branch
    assert "credential.helper=/opt/devenv/bin/git-credential-devenv GIT_TOKEN git" in clone
    pull = inside.scripts_of(WS, "pull")[0]
    assert "dvc remote add --local --force devenv s3://bucket/store" in pull
    assert "endpointurl http://minio.example:9000" in pull
    users = dict(fake.backend.users)  # type: ignore[attr-defined]
    assert users["bash -c"] == "root" and users["python3 -c"] == "dev"

    setup = api.get(f"/v1/workspaces/{WS}").json()["setup"]
    assert setup["repo"]["status"] == "cloned" and setup["repo"]["ok"] is True
    assert setup["data"]["status"] == "pulled" and setup["data"]["ok"] is True
    assert setup["data"]["hash"] == DATA_HASH
    assert set(setup["data"]["files"]) == {"data/train.csv", "data/labels.txt"}
    assert setup["repo_facts"]["commit"] == COMMIT

    placed = fake.backend.files(WS)[WORKSPACE_ENV_PATH].decode()
    assert f"export DEVENV_DATA_HASH={DATA_HASH}\n" in placed  # rewritten once the pull's hash was known
    assert "export DEVENV_REPO_DIR=/home/dev/proj\n" in placed and "export WANDB_PROJECT=exp\n" in placed
    assert f"export DEVENV_IMAGE_HASH={versioned['image_hash']}\n" in placed
    assert "tester-token" not in placed
    said = events(api, WS)
    assert any(message.startswith(f"cloned {URL}") for message in said)
    assert any(message.startswith("pulled DVC data from s3://bucket/store") for message in said)


def test_secrets_are_the_owners_and_a_missing_one_is_named(
    api: TestClient, fake: FakeDaemon, versioned: dict[str, Any]
) -> None:
    placed = fake.backend.secrets(WS)
    assert set(placed) == {"GIT_TOKEN", "API_SECRET", SECRETS_ENV_NAME}
    assert placed["GIT_TOKEN"] == b"tester-token"  # the owner's, not alice's
    assert placed["API_SECRET"] == b'it\'s "secret" $HOME'
    assert b"export GIT_TOKEN=tester-token\n" in placed[SECRETS_ENV_NAME]
    assert b"WANDB_API_KEY" not in placed[SECRETS_ENV_NAME]

    status = api.get(f"/v1/workspaces/{WS}/status").json()
    assert status["secrets"]["missing"] == ["WANDB_API_KEY"]
    assert status["secrets"]["delivered"] == ["API_SECRET", "GIT_TOKEN"]
    assert sorted(status["secrets_needed"]) == ["API_SECRET", "GIT_TOKEN", "WANDB_API_KEY"]
    missing = [message for message in events(api, WS) if "WANDB_API_KEY" in message]
    assert len(missing) == 1 and "devenv secret set WANDB_API_KEY" in missing[0]
    assert not any("tester-token" in message for message in events(api, WS))


def test_a_later_start_does_not_clone_or_pull_again(api: TestClient, inside: Inside, versioned: dict[str, Any]) -> None:
    assert frames(api.post(f"/v1/workspaces/{WS}/stop"))[-1]["workspace"]["state"] == "stopped"
    assert frames(api.post(f"/v1/workspaces/{WS}/start"))[-1]["workspace"]["state"] == "running"
    kinds = inside.kinds(WS)
    assert kinds.count("pull") == 1  # pulled once already: not again at each start
    assert kinds.count("clone") == 1  # the facts found the clone: no clone script at all
    assert kinds[-1:] == ["facts"] and kinds.count("facts") == 3
    setup = api.get(f"/v1/workspaces/{WS}").json()["setup"]
    assert setup["repo"]["status"] == "cloned" and setup["repo"]["ok"] is True  # when it was cloned, kept
    assert setup["data"]["status"] == "pulled" and setup["data"]["hash"] == DATA_HASH
    assert sum(message.startswith("cloned ") for message in events(api, WS)) == 1
    assert sum(message.startswith("pulled DVC data") for message in events(api, WS)) == 1


def test_a_failing_clone_leaves_it_running_with_the_token_secret_named(
    api: TestClient, inside: Inside, tmp_path: Path
) -> None:
    inside.per_workspace["badclone"] = {"clone": AUTH_FAILED}
    last = up(api, upload_of(tmp_path / "p", "badclone"))
    assert last["workspace"]["state"] == "running", last
    assert inside.kinds("badclone") == ["facts", "clone", "facts"]  # no pull into a clone that is not there
    status = api.get("/v1/workspaces/badclone/status").json()
    assert status["repo"]["status"] == "failed" and status["repo"]["ok"] is False
    assert "could not clone" in status["repo"]["message"] and "exited 12" in status["repo"]["message"]
    assert "GIT_TOKEN" in status["repo"]["hint"] and "devenv secret set GIT_TOKEN" in status["repo"]["hint"]
    assert status["repo"]["git"] is None
    assert status["data"]["ok"] is False and "repo step failed first" in status["data"]["message"]
    assert sorted(status["secrets"]["missing"]) == ["API_SECRET", "GIT_TOKEN", "WANDB_API_KEY"]
    said = [message for message in events(api, "badclone") if "could not clone" in message]
    assert len(said) == 1 and "Authentication failed" in said[0] and "GIT_TOKEN" in said[0]


def test_a_failing_pull_leaves_it_running_and_is_tried_again_at_the_next_start(
    api: TestClient, inside: Inside, tmp_path: Path
) -> None:
    refused = (
        1,
        b"",
        b"ERROR: failed to connect to s3 (bucket/store/files/md5) - Could not connect to the "
        b'endpoint URL: "http://minio.example:9000/bucket/store/files/md5"\n',
    )
    inside.per_workspace["badpull"] = {"pull": refused}
    assert up(api, upload_of(tmp_path / "p", "badpull"))["workspace"]["state"] == "running"
    data = api.get("/v1/workspaces/badpull/status").json()["data"]
    assert data["status"] == "failed" and "does not answer" in data["hint"] and "minio.example" in data["hint"]
    assert "hash" not in data or data["hash"] is None
    del inside.per_workspace["badpull"]
    frames(api.post("/v1/workspaces/badpull/stop"))
    frames(api.post("/v1/workspaces/badpull/start"))
    assert inside.kinds("badpull").count("pull") == 2
    assert api.get("/v1/workspaces/badpull/status").json()["data"]["hash"] == DATA_HASH


def test_a_dvc_file_of_an_odd_shape_does_not_stop_the_workspace(
    api: TestClient, inside: Inside, tmp_path: Path
) -> None:
    inside.dvc_files = {**DVC_FILES, "data/odd.dvc": "outs: 5\n"}
    last = up(api, upload_of(tmp_path / "p", "oddfile"))
    assert last.get("workspace", {}).get("state") == "running", last


def test_a_workspace_without_repo_runs_no_setup_script(
    api: TestClient, fake: FakeDaemon, inside: Inside, tmp_path: Path
) -> None:
    assert up(api, project_upload(tmp_path / "p", name="plain"))["workspace"]["state"] == "running"
    assert inside.kinds("plain") == []
    assert WORKSPACE_ENV_PATH in fake.backend.files("plain")
    assert b"DEVENV_REPO_DIR" not in fake.backend.files("plain")[WORKSPACE_ENV_PATH]
    status = api.get("/v1/workspaces/plain/status").json()
    assert (status["repo"], status["data"], status["tracking"], status["secrets_needed"]) == (None, None, None, [])


# -- who may do what -----------------------------------------------------------------------------


def grant(api: TestClient, person: str, *, ssh: bool, jupyter: bool = False) -> None:
    answer = api.post(f"/v1/workspaces/{WS}/access", json={"person": person, "ssh": ssh, "jupyter": jupyter})
    assert answer.status_code == 200, answer.text


def test_status_needs_ssh_access(api: TestClient, people: dict[str, dict[str, str]], versioned: dict[str, Any]) -> None:
    own = api.get(f"/v1/workspaces/{WS}/status")
    assert own.status_code == 200 and own.json()["repo"]["git"]["commit"] == COMMIT
    refused = api.get(f"/v1/workspaces/{WS}/status", headers=people["alice"])
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert COMMIT not in refused.text
    grant(api, "alice", ssh=False, jupyter=True)  # Jupyter is not a shell
    assert api.get(f"/v1/workspaces/{WS}/status", headers=people["alice"]).status_code == 403
    grant(api, "alice", ssh=True)
    granted = api.get(f"/v1/workspaces/{WS}/status", headers=people["alice"])
    assert granted.status_code == 200 and granted.json()["repo"]["git"]["commit"] == COMMIT
    assert api.get(f"/v1/workspaces/{WS}/status", headers=people["bob"]).status_code == 403
    assert api.get("/v1/workspaces/ghost/status").status_code == 404
    with TestClient(api.app) as anonymous:
        assert anonymous.get(f"/v1/workspaces/{WS}/status").status_code == 401


def test_data_pull_is_the_owners(
    api: TestClient, inside: Inside, people: dict[str, dict[str, str]], versioned: dict[str, Any]
) -> None:
    grant(api, "alice", ssh=True)
    refused = api.post(f"/v1/workspaces/{WS}/data/pull", headers=people["alice"])
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert inside.kinds(WS).count("pull") == 1
    got = frames(api.post(f"/v1/workspaces/{WS}/data/pull"))
    assert "setup" in got[-1], got
    assert got[-1]["setup"]["data"]["status"] == "pulled" and got[-1]["setup"]["data"]["hash"] == DATA_HASH
    assert inside.kinds(WS).count("pull") == 2
    # the step's own event comes before the result: a quick pull must not end the stream ahead of it
    assert any("event" in frame and "pulled DVC data" in frame["event"]["message"] for frame in got), got
    assert any(message == "data pull" for message in events(api, WS))


def test_data_pull_of_a_stopped_workspace_is_refused_before_streaming(
    api: TestClient, inside: Inside, versioned: dict[str, Any]
) -> None:
    frames(api.post(f"/v1/workspaces/{WS}/stop"))
    answer = api.post(f"/v1/workspaces/{WS}/data/pull")
    assert answer.status_code == 409 and f"devenv start {WS}" in answer.json()["hint"]
    assert inside.kinds(WS).count("pull") == 1


def test_data_pull_of_a_workspace_without_data_says_how_to_add_it(
    api: TestClient, inside: Inside, tmp_path: Path
) -> None:
    up(api, project_upload(tmp_path / "p", name="nodata"))
    got = frames(api.post("/v1/workspaces/nodata/data/pull"))
    assert "error" in got[-1], got
    error = error_from_payload(got[-1]["error"])
    assert error.code == "usage" and error.hint and "data:" in error.hint
    assert inside.kinds("nodata") == []


def test_snapshots_are_made_by_the_owner_and_read_by_those_with_access(
    api: TestClient, people: dict[str, dict[str, str]], versioned: dict[str, Any]
) -> None:
    grant(api, "alice", ssh=True)
    refused = api.post(f"/v1/workspaces/{WS}/snapshots", json={"note": "mine"}, headers=people["alice"])
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert api.get("/v1/snapshots").json()["items"] == []

    made = api.post(f"/v1/workspaces/{WS}/snapshots", json={"note": "baseline"})
    assert made.status_code == 200, made.text
    record = made.json()
    assert record["workspace"] == WS and record["owner"] == "tester" and record["made_by"] == "tester"
    assert record["note"] == "baseline" and record["image_hash"] == versioned["image_hash"]
    assert record["repo"] == {
        "url": URL,
        "folder": "proj",
        "commit": COMMIT,
        "branch": "main",
        "dirty": False,
        "diff_hash": None,
    }
    assert record["data"]["hash"] == DATA_HASH and record["wandb_runs"] == ["run1abc"]
    assert record["lock_hash"] and record["base_digest"].startswith("sha256:") and record["project_hash"]
    assert "tester-token" not in made.text

    listed = api.get("/v1/snapshots", headers=people["alice"])  # granted on the workspace
    assert listed.status_code == 200 and [item["id"] for item in listed.json()["items"]] == [record["id"]]
    got = api.get(f"/v1/snapshots/{record['id']}", headers=people["alice"])
    assert got.status_code == 200 and got.json() == record
    # bob has no grant at all: the snapshot is not his to see, nor to up from
    assert api.get("/v1/snapshots", headers=people["bob"]).json()["items"] == []
    hidden = api.get(f"/v1/snapshots/{record['id']}", headers=people["bob"])
    assert hidden.status_code == 404 and hidden.json()["code"] == "snapshot_not_found"
    assert api.post(f"/v1/snapshots/{record['id']}/up", json={}, headers=people["bob"]).status_code == 404
    assert api.get("/v1/snapshots", params={"workspace": "other"}).json()["items"] == []
    with TestClient(api.app) as anonymous:
        assert anonymous.get("/v1/snapshots").status_code == 401
        assert anonymous.get(f"/v1/snapshots/{record['id']}").status_code == 401


def test_an_unknown_snapshot_is_404_snapshot_not_found(api: TestClient, people: dict[str, dict[str, str]]) -> None:
    answer = api.get("/v1/snapshots/nope", headers=people["bob"])
    assert answer.status_code == 404
    assert answer.json()["code"] == "snapshot_not_found"
    assert isinstance(error_from_payload(answer.json()), SnapshotNotFound)
    up_answer = api.post("/v1/snapshots/nope/up", json={"name": "x"})
    assert up_answer.status_code == 404 and up_answer.json()["code"] == "snapshot_not_found"
    assert api.get("/v1/workspaces").json()["total"] == 0


def test_a_snapshot_of_a_stopped_workspace_is_refused(api: TestClient, versioned: dict[str, Any]) -> None:
    frames(api.post(f"/v1/workspaces/{WS}/stop"))
    answer = api.post(f"/v1/workspaces/{WS}/snapshots", json={})
    assert answer.status_code == 409
    assert isinstance(error_from_payload(answer.json()), WorkspaceBusy)
    assert f"devenv start {WS}" in answer.json()["hint"]
    assert api.get("/v1/snapshots").json()["items"] == []


def test_up_from_a_snapshot_by_another_person_pins_the_commit_and_the_image(
    api: TestClient, fake: FakeDaemon, inside: Inside, people: dict[str, dict[str, str]], versioned: dict[str, Any]
) -> None:
    record = api.post(f"/v1/workspaces/{WS}/snapshots", json={"note": "baseline"}).json()
    # a snapshot is shared with those its workspace is shared with
    stranger = api.post(f"/v1/snapshots/{record['id']}/up", json={"name": "mine"}, headers=people["alice"])
    assert stranger.status_code == 404 and stranger.json()["code"] == "snapshot_not_found"
    grant(api, "alice", ssh=False, jupyter=True)
    grant(api, "bob", ssh=False, jupyter=True)
    # alice may not take over tester's workspace by naming it
    over = api.post(f"/v1/snapshots/{record['id']}/up", json={"name": WS}, headers=people["alice"])
    assert over.status_code == 403

    last = frames(api.post(f"/v1/snapshots/{record['id']}/up", json={"name": "copy"}, headers=people["alice"]))[-1]
    assert "workspace" in last, last
    made = last["workspace"]
    assert made["name"] == "copy" and made["owner"] == "alice" and made["state"] == "running"
    assert made["image_hash"] == versioned["image_hash"] and made["image"] == versioned["image"]
    assert made["pins"] == {"snapshot": record["id"], "commit": COMMIT}
    clone = inside.scripts_of("copy", "clone")
    assert len(clone) == 1 and f"checkout --quiet {COMMIT}" in clone[0]
    assert fake.backend.calls["create"] == 2
    # alice's workspace gets alice's secrets, not the snapshot owner's
    assert fake.backend.secrets("copy")["GIT_TOKEN"] == b"alices-token"
    status = api.get("/v1/workspaces/copy/status", headers=people["alice"]).json()
    assert status["pins"]["commit"] == COMMIT and status["image_hash"] == versioned["image_hash"]
    assert api.get("/v1/workspaces/copy/status", headers=people["tester"]).status_code == 403

    default = frames(api.post(f"/v1/snapshots/{record['id']}/up", json={}, headers=people["bob"]))[-1]
    assert default["workspace"]["name"] == f"{WS}-{record['id'][:6]}" and default["workspace"]["owner"] == "bob"


def test_up_from_a_dirty_snapshot_says_only_the_commit_is_reproduced(
    api: TestClient, inside: Inside, versioned: dict[str, Any]
) -> None:
    inside.dirty = True
    record = api.post(f"/v1/workspaces/{WS}/snapshots", json={}).json()
    assert record["repo"]["dirty"] is True and record["repo"]["diff_hash"] == "d" * 64
    assert any("tree dirty" in message for message in events(api, WS))
    frames(api.post(f"/v1/snapshots/{record['id']}/up", json={"name": "again"}))
    said = [message for message in events(api, "again") if "uncommitted changes" in message]
    assert len(said) == 1 and "dddddddddddd" in said[0]


# -- the client and the CLI against a served daemon ----------------------------------------------


@pytest.fixture
def daemon(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeDaemon, Client, Inside]]:
    """A fake daemon on a unix socket (its caller: the local admin), the CLI pointed at it, and WS up in it."""
    monkeypatch.setenv("DEVENV_HOME", str(folder / "home"))
    monkeypatch.delenv("DEVENV_DEBUG", raising=False)
    inside = Inside()
    with served_fake_daemon(folder / "d") as (fake, client):
        fake.backend.exec_handler = inside
        monkeypatch.setenv("DEVENV_HOST", f"unix://{folder / 'd' / 'd.sock'}")
        client.set_secret("GIT_TOKEN", "t0k")
        last = list(client.up(upload_of(folder / "p"), name=WS))[-1]
        assert last["workspace"]["state"] == "running", last
        yield fake, client, inside


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else code), captured.out, captured.err


def test_the_client_reads_status_and_snapshots(daemon: tuple[FakeDaemon, Client, Inside]) -> None:
    _, client, _ = daemon
    assert client.status(WS)["repo"]["git"]["commit"] == COMMIT
    record = client.snapshot(WS, note="n")
    assert record["made_by"] == local_actor()
    assert [item["id"] for item in client.snapshots()] == [record["id"]]
    assert [item["id"] for item in client.snapshots(WS)] == [record["id"]]
    assert client.snapshots("other") == []
    assert client.snapshot_record(record["id"]) == record
    with pytest.raises(SnapshotNotFound):
        client.snapshot_record("nope")


def test_cli_status_shows_the_commit_and_whether_it_is_clean(
    daemon: tuple[FakeDaemon, Client, Inside], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, inside = daemon
    code, out, err = cli(capsys, "status", WS)
    assert code == 0, err
    assert out.splitlines()[0] == f"{WS}: running"
    assert f"branch main  commit {COMMIT[:12]}  clean" in out
    assert f"{URL} -> /home/dev/proj" in out
    assert "pulled at" in out and f"data hash {DATA_HASH[:12]}" in out
    assert "MISSING: API_SECRET, WANDB_API_KEY" in out
    assert "tracking   wandb project exp, entity team" in out
    inside.dirty = True
    code, out, _ = cli(capsys, "status", WS)
    assert code == 0 and f"commit {COMMIT[:12]}  dirty (3 changes)" in out and "clean" not in out
    code, out, _ = cli(capsys, "status", WS, "--json")
    assert code == 0 and json.loads(out)["repo"]["git"]["dirty"] is True


def test_cli_status_says_whether_devenv_verify_proved_the_image(
    daemon: tuple[FakeDaemon, Client, Inside],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, client, _ = daemon
    monkeypatch.setenv("DEVENV_CACHE_DIR", str(tmp_path / "cache"))
    image_id = client.status(WS)["image_id"]
    assert image_id and image_id.startswith("sha256:")
    assert client.status(WS)["verified_at"] is None
    code, out, err = cli(capsys, "status", WS)
    assert code == 0, err
    assert f"runs       {image_id[:19]}  not verified" in out
    record_verified(image_id, "lockhash")
    assert client.status(WS)["verified_at"]
    code, out, err = cli(capsys, "status", WS)
    assert code == 0, err
    assert f"runs       {image_id[:19]}  verified 20" in out and "not verified" not in out
    record_verified("sha256:" + "0" * 64, "lockhash")  # another image's proof is not this one's
    monkeypatch.setenv("DEVENV_CACHE_DIR", str(tmp_path / "other-cache"))
    assert client.status(WS)["verified_at"] is None


def test_cli_snapshot_and_snapshots(
    daemon: tuple[FakeDaemon, Client, Inside], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "snapshot", WS, "-m", "first try")
    assert code == 0, err
    snapshot_id = out.strip()
    assert len(snapshot_id) == 12 and f"devenv up --from-snapshot {snapshot_id}" in err
    code, out, err = cli(capsys, "snapshots")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "WORKSPACE", "TAKEN", "IMAGE", "COMMIT", "DATA", "RUNS", "NOTE"]
    assert len(lines) == 2
    row = lines[1]
    assert row.split()[:2] == [snapshot_id, WS]
    assert f" {COMMIT[:10]} " in row and f" {DATA_HASH[:12]} " in row and row.split()[-3:] == ["1", "first", "try"]
    code, out, _ = cli(capsys, "snapshots", "other")
    assert code == 0 and len(out.splitlines()) == 1  # the header only


def test_cli_up_from_an_unknown_snapshot_is_one_error_line(
    daemon: tuple[FakeDaemon, Client, Inside], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _, _ = daemon
    code, out, err = cli(capsys, "up", "--from-snapshot", "nope")
    assert code == 1, (out, err)
    assert "Traceback" not in out + err and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0] == "error (snapshot_not_found): no snapshot 'nope'"
    assert len(lines) <= 2 and all(line.startswith("  hint: ") for line in lines[1:])  # at most its hint
    assert len(fake.backend.list_workspaces()) == 1


def test_cli_up_from_a_snapshot_makes_the_workspace(
    daemon: tuple[FakeDaemon, Client, Inside], capsys: pytest.CaptureFixture[str]
) -> None:
    _, client, inside = daemon
    snapshot_id = client.snapshot(WS)["id"]
    code, out, err = cli(capsys, "up", "--from-snapshot", snapshot_id, "--name", "again")
    assert code == 0, err
    assert "again: running" in out
    assert client.workspace("again")["pins"] == {"snapshot": snapshot_id, "commit": COMMIT}
    assert f"checkout --quiet {COMMIT}" in inside.scripts_of("again", "clone")[0]


def test_cli_data_pull_without_data_is_a_usage_error_with_a_hint(
    daemon: tuple[FakeDaemon, Client, Inside], capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    _, client, inside = daemon
    list(client.up(project_upload(folder / "plain", name="plain"), name="plain"))
    code, out, err = cli(capsys, "data", "pull", "plain")
    assert code == 2, (out, err)
    assert "no `data:`" in err and "hint" in err and "devenv up" in err
    assert "Traceback" not in err
    assert inside.kinds("plain") == []


def test_cli_data_pull_pulls_again(
    daemon: tuple[FakeDaemon, Client, Inside], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, inside = daemon
    code, out, err = cli(capsys, "data", "pull", WS)
    assert code == 0, err
    assert out.strip() == f"{WS}: data pulled (data hash {DATA_HASH[:12]})"
    assert inside.kinds(WS).count("pull") == 2
    inside.per_workspace[WS] = {
        "pull": (
            1,
            b"",
            b"ERROR: failed to pull data from the cloud - 'data/x' does not "
            b"exist as an output or a stage name in 'dvc.yaml'\n",
        )
    }
    code, out, err = cli(capsys, "data", "pull", WS)
    assert code == 1 and "could not pull DVC data" in err and "data: paths:" in err
    assert "Traceback" not in err
