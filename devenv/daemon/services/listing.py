"""GET /v1/workspaces's answer, made fast for 200 clients each asking a different page (issue 19).

A page costs what its rows cost: decoding three JSON columns and a time, building a dict of 22 keys and encoding
it, about 20 us a row. Most rows have not changed since the last listing, so each row's JSON is kept (up to
MAX_KEPT rows) with what says it changed (VERSIONED: updated_at, which every write bumps, and the columns a
write that bypasses the ORM would change); a page reads those cheap columns for its rows, reads the full
columns only of the rows that changed, and joins the kept JSON with what is computed at each read (autostop's
countdown, a cloud price)."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Row

from devenv.daemon.store import states
from devenv.daemon.store.workspaces import WorkspaceRecords

MAX_KEPT = 50_000  # rows' JSON kept: about 30 MB at 600 bytes each
COMPUTED = ("autostop_in", "last_active_at", "price_per_hour")  # written at each read, in workspace_json's order
_MARKS = {key: f"\x00{index}" for index, key in enumerate(COMPUTED)}  # no text a record holds: JSON escapes NUL
_MARKED = re.compile(rb'"\\u0000[0-9]"')


class Listing:
    def __init__(
        self, records: WorkspaceRecords, row_json: Callable[[Row[Any]], dict[str, Any]], *, max_kept: int = MAX_KEPT
    ) -> None:
        self.records = records
        self.row_json = row_json  # services.workspaces.workspace_json
        self.max_kept = max_kept
        self._kept: OrderedDict[str, tuple[tuple[Any, ...], tuple[bytes, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def page(
        self,
        *,
        owner: str | None,
        limit: int,
        after: str | None,
        visible: tuple[str, Select[Any]] | None,
        priced: dict[str, Callable[[str], float | None]],
    ) -> bytes:
        rows, total = self.records.page_versions(owner=owner, limit=limit, after=after, visible=visible)
        kept = self._kept_parts(rows)
        now = time.time()
        items = [_joined(kept[row.name], row, now, priced) for row in rows]
        following = json.dumps(rows[-1].name) if len(rows) == limit else "null"
        return b'{"items":[' + b",".join(items) + b'],"total":%d,"next":%s}' % (total, following.encode())

    def _kept_parts(self, rows: list[Row[Any]]) -> dict[str, tuple[bytes, ...]]:
        """Each row's JSON in parts around its computed keys, read again where the row changed."""
        found: dict[str, tuple[bytes, ...]] = {}
        changed: dict[str, tuple[Any, ...]] = {}
        with self._lock:
            for row in rows:
                version = tuple(row)
                entry = self._kept.get(row.name)
                if entry is not None and entry[0] == version:
                    self._kept.move_to_end(row.name)
                    found[row.name] = entry[1]
                else:
                    changed[row.name] = version
        if changed:
            fresh = {row.name: _parts(self.row_json(row)) for row in self.records.listed(changed)}
            with self._lock:
                for name, part in fresh.items():
                    self._kept[name] = (changed[name], part)  # a row written meanwhile: its next read sees it
                    self._kept.move_to_end(name)
                while len(self._kept) > self.max_kept:
                    self._kept.popitem(last=False)
            found.update(fresh)
        return found


def _parts(item: dict[str, Any]) -> tuple[bytes, ...]:
    """A row's JSON cut where its COMPUTED keys' values go, so that a read writes them in their places (the
    keys keep the order workspace_json gives them)."""
    marked = {key: _MARKS.get(key, value) for key, value in item.items()}
    parts = tuple(_MARKED.split(_encoded(marked)))
    if len(parts) == len(COMPUTED) + 1:
        return parts
    # a value that is itself one of the marks (a NUL and a digit, nothing devenv writes): the computed keys last
    rest = _encoded({key: value for key, value in item.items() if key not in _MARKS})[:-1]
    return (rest + b',"' + COMPUTED[0].encode() + b'":', *(f',"{key}":'.encode() for key in COMPUTED[1:]), b"}")


def _encoded(item: dict[str, Any]) -> bytes:
    return json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _joined(parts: tuple[bytes, ...], row: Row[Any], now: float, priced: dict[str, Callable[..., Any]]) -> bytes:
    """The kept parts with the keys that change without a write: autostop's countdown (from the last activity)
    and a cloud price, in the order COMPUTED names them."""
    autostop_in = None
    if row.autostop_seconds and states.container_up(row.state, row.error_code) and row.last_active_at:
        autostop_in = max(0, int(row.autostop_seconds - (now - row.last_active_at)))
    price = priced[row.backend](row.name) if row.backend in priced else None
    values = {"autostop_in": autostop_in, "last_active_at": row.last_active_at, "price_per_hour": price}
    joined = [parts[0]]
    for key, part in zip(COMPUTED, parts[1:], strict=True):
        joined += (_number(values[key]).encode(), part)
    return b"".join(joined)


def _number(value: float | None) -> str:
    """A number as JSON writes it (Python's repr of an int or a finite float is JSON), or null."""
    if value is None:
        return "null"
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a JSON number")
    return repr(value)
