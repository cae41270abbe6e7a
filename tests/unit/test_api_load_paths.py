"""The API's hot path under load (issue 19): shared store reads, the token check, the listing filtered in SQL.

Identical reads asked at the same time are done once (daemon/store/db.py SharedReads), but never one that began
before a request came: a token revoked before a request is refused on that very request.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from devenv.daemon.api.authz import Visibility
from devenv.daemon.services.access import Caller
from devenv.daemon.services.tokens import Tokens
from devenv.daemon.store.db import SharedReads
from devenv.daemon.store.tables import Grant, Workspace
from devenv.errors import Unauthorized
from devenv.testing.daemon import FakeDaemon, fake_daemon


@pytest.fixture
def fake(tmp_path: Path) -> FakeDaemon:
    return fake_daemon(tmp_path / "daemon")


@pytest.fixture
def api(fake: FakeDaemon) -> Iterator[TestClient]:
    with TestClient(fake.app) as client:
        yield client


def add_records(fake: FakeDaemon, owners: dict[str, str], grants: list[dict[str, Any]] | None = None) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "name": name,
            "owner": owner,
            "backend": "local",
            "desired": "stopped",
            "state": "stopped",
            "generation": 1,
            "ports": [],
            "created_at": now,
            "updated_at": now,
        }
        for name, owner in owners.items()
    ]
    with fake.daemon.services.workspaces.sessions.begin() as session:
        session.execute(insert(Workspace), rows)
        if grants:
            every = {"ssh": False, "jupyter": False, "expires_at": None, "ended_at": None}
            session.execute(insert(Grant), [{**every, **grant} for grant in grants])


def test_a_revoked_token_is_refused_on_the_very_next_request(fake: FakeDaemon, api: TestClient) -> None:
    headers = fake.headers
    for _ in range(3):
        assert api.get("/v1/workspaces", headers=headers).status_code == 200
    other_process = Tokens(fake.daemon.services.workspaces.sessions)  # as `devenvd token revoke` does it
    assert other_process.revoke("tester")
    refused = api.get("/v1/workspaces", headers=headers)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"


def test_identical_reads_asked_together_are_done_once_and_all_get_the_answer() -> None:
    reads = SharedReads(threads=1)
    hold, calls = threading.Event(), []

    def blocker() -> str:
        hold.wait(10)
        return "blocker"

    def page() -> str:
        calls.append(1)
        return "page"

    async def main() -> list[str]:
        async with anyio.create_task_group() as group:
            group.start_soon(reads.read, "other", blocker)  # holds the one thread
            await anyio.wait_all_tasks_blocked()
            answers: list[str] = []

            async def ask() -> None:
                answers.append(await reads.read("page", page))

            for _ in range(5):
                group.start_soon(ask)
            await anyio.wait_all_tasks_blocked()
            hold.set()
        return answers

    assert anyio.run(main) == ["page"] * 5
    assert len(calls) == 1 and reads.reads == 2


def test_a_read_under_way_is_not_joined_by_a_request_that_came_after_it_began() -> None:
    reads = SharedReads(threads=4)
    began, hold = threading.Event(), threading.Event()
    answers = iter(["before", "after"])

    def work() -> str:
        answer = next(answers)
        if answer == "before":
            began.set()
            hold.wait(10)
        return answer

    async def main() -> tuple[str, str]:
        first: list[str] = []
        async with anyio.create_task_group() as group:

            async def ask_first() -> None:
                first.append(await reads.read("key", work))

            group.start_soon(ask_first)
            await anyio.to_thread.run_sync(began.wait, 10)
            second = await reads.read("key", work)  # the first read began before this request: a read of its own
            hold.set()
        return first[0], second

    assert anyio.run(main) == ("before", "after")
    assert reads.reads == 2


def test_an_error_reaches_every_caller_that_joined_the_read() -> None:
    reads = SharedReads(threads=1)
    hold = threading.Event()

    def refuse() -> str:
        raise Unauthorized("the token was not accepted (revoked or mistyped)")

    async def main() -> list[str]:
        seen: list[str] = []

        async def ask() -> None:
            try:
                await reads.read("token", refuse)
            except Unauthorized as error:
                seen.append(error.code)

        async with anyio.create_task_group() as group:
            group.start_soon(reads.read, "other", lambda: hold.wait(10))
            await anyio.wait_all_tasks_blocked()
            for _ in range(3):
                group.start_soon(ask)
            await anyio.wait_all_tasks_blocked()
            hold.set()
        return seen

    assert anyio.run(main) == ["unauthorized"] * 3
    assert reads.reads == 2


@pytest.mark.parametrize("limit", [2, 100])  # both plans: walk names in order (sees many), or sort the few seen
def test_a_members_listing_is_what_visibility_allows(fake: FakeDaemon, api: TestClient, limit: int) -> None:
    owners = {f"ws-{i:02d}": ("tester" if i % 3 == 0 else "other") for i in range(30)}
    now = time.time()
    grants = [
        {"workspace": "ws-01", "person": "tester", "ssh": True, "granted_by": "other"},
        {"workspace": "ws-02", "person": "tester", "ssh": True, "granted_by": "other", "expires_at": now - 5},
        {
            "workspace": "ws-04",
            "person": "tester",
            "ssh": True,
            "granted_by": "other",
            "ended_at": dt.datetime.now(dt.UTC),
        },
        {"workspace": "ws-05", "person": "tester", "jupyter": True, "granted_by": "other", "expires_at": now + 3600},
        {"workspace": "ws-07", "person": "someone", "ssh": True, "granted_by": "other"},
    ]
    add_records(fake, owners, grants)
    expected = sorted(Visibility(fake.daemon.services.workspaces.sessions).workspaces("tester"))
    assert "ws-01" in expected and "ws-05" in expected and "ws-02" not in expected and "ws-04" not in expected
    seen: list[str] = []
    after: str | None = None
    while True:
        page = api.get(
            "/v1/workspaces", params={"limit": limit, **({"after": after} if after else {})}, headers=fake.headers
        ).json()
        assert page["total"] == len(expected)
        seen += [item["name"] for item in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == expected
    mine = api.get("/v1/workspaces", params={"owner": "other"}, headers=fake.headers).json()
    assert [item["name"] for item in mine["items"]] == ["ws-01", "ws-05"] and mine["total"] == 2


def test_an_admins_listing_is_every_workspace(fake: FakeDaemon, api: TestClient) -> None:
    add_records(fake, {f"ws-{i:02d}": ("a" if i % 2 else "b") for i in range(7)})
    admin = fake.daemon.services.tokens.create("boss", admin=True)
    page = api.get("/v1/workspaces", params={"limit": 5}, headers={"Authorization": f"Bearer {admin}"}).json()
    assert [item["name"] for item in page["items"]] == [f"ws-{i:02d}" for i in range(5)]
    assert page["total"] == 7 and page["next"] == "ws-04"
    assert Visibility(fake.daemon.services.workspaces.sessions).visible_clause(Caller("boss", admin=True)) is None
