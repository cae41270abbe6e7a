"""GET /v1/workspaces's kept rows (services/listing.py): what a full read gives, after every kind of write, with
autostop's countdown computed at each read, and bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from devenv.daemon.services.listing import Listing
from devenv.daemon.services.workspaces import workspace_json
from devenv.daemon.store import states
from devenv.daemon.store.db import make_engine, migrate, session_factory
from devenv.daemon.store.tables import Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords

NAMES = [f"ws-{i:02d}" for i in range(30)]


@pytest.fixture
def records(tmp_path: Path) -> WorkspaceRecords:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    made = WorkspaceRecords(session_factory(engine))
    for index, name in enumerate(NAMES):
        fields = {"project_hash": "h", "ports": [8888], "autostop_seconds": 600, "gpu": "A100:1" if index % 2 else None}
        made.record_up(f"p{index % 3}", name, "local", fields)
    return made


def listed(listing: Listing, **asked: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"owner": None, "limit": 100, "after": None, "visible": None, "priced": {}}
    return dict(json.loads(listing.page(**{**query, **asked})))


def full_read(records: WorkspaceRecords) -> dict[str, dict[str, Any]]:
    now = time.time()
    return {row.name: workspace_json(row, now) for row in records.listed(NAMES)}


def same_as_a_full_read(page: dict[str, Any], records: WorkspaceRecords) -> None:
    expected = full_read(records)
    for shown in page["items"]:
        item, want = dict(shown), expected[shown["name"]]
        assert abs((item.pop("autostop_in") or 0) - (want.pop("autostop_in") or 0)) <= 1  # read a moment apart
        assert item == want


def test_a_kept_listing_is_what_a_full_read_gives_after_every_kind_of_write(records: WorkspaceRecords) -> None:
    listing = Listing(records, workspace_json)
    first = listed(listing)
    assert [item["name"] for item in first["items"]] == NAMES and first["total"] == 30
    same_as_a_full_read(first, records)

    now = time.time()
    assert records.set_state("ws-03", states.RUNNING, generation=1, ssh_port=2222, last_active_at=now - 60)
    records.touch_active("ws-04", now)
    records.set_setup("ws-05", {"code": {"folder": "/home/dev/p"}})
    records.request("ws-06", desired=states.DESIRE_STOPPED, state=states.STOPPING, unless={states.STOPPED})
    with records.sessions.begin() as session:  # a write that bypasses the store's owner (a repair by hand)
        session.execute(update(Workspace).where(Workspace.name == "ws-07").values(state=states.FAILED))
    records.delete("ws-08")

    second = listed(listing)
    same_as_a_full_read(second, records)
    by_name = {item["name"]: item for item in second["items"]}
    assert by_name["ws-03"]["state"] == "running" and by_name["ws-03"]["ssh_port"] == 2222
    assert 530 <= by_name["ws-03"]["autostop_in"] <= 540  # computed at the read, from the last activity
    assert by_name["ws-04"]["last_active_at"] == now
    assert by_name["ws-05"]["setup"] == {"code": {"folder": "/home/dev/p"}}
    assert by_name["ws-06"]["desired"] == "stopped" and by_name["ws-07"]["state"] == "failed"
    assert "ws-08" not in by_name and second["total"] == 29


def test_pages_follow_one_another_and_the_kept_rows_are_bounded(records: WorkspaceRecords) -> None:
    listing = Listing(records, workspace_json, max_kept=5)
    seen: list[str] = []
    after = None
    while True:
        page = listed(listing, limit=7, after=after)
        same_as_a_full_read(page, records)
        seen += [item["name"] for item in page["items"]]
        assert len(listing._kept) <= 5
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == NAMES
    assert listed(listing, owner="p1")["total"] == 10


def test_a_cloud_price_is_asked_at_each_read(records: WorkspaceRecords) -> None:
    listing = Listing(records, workspace_json)
    prices = iter([0.5, 0.75])
    page = listed(listing, limit=1, priced={"local": lambda name: next(prices)})
    assert page["items"][0]["price_per_hour"] == 0.5
    assert listed(listing, limit=1, priced={"local": lambda name: next(prices)})["items"][0]["price_per_hour"] == 0.75


def test_a_record_holding_a_mark_is_still_listed_whole(records: WorkspaceRecords) -> None:
    records.set_state("ws-00", states.FAILED, reason="\x001")  # what the listing cuts its kept rows at
    page = listed(Listing(records, workspace_json), limit=1)
    same_as_a_full_read(page, records)
    assert page["items"][0]["reason"] == "\x001"
