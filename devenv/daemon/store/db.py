"""The store's engine: SQLite in WAL mode by default, PostgreSQL by URL; schema by Alembic.

The daemon migrates to head at start, so a new version of devenv upgrades an old store in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20
        )

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


STORE_READERS = 8  # worker threads that read the store on the API's hot path: under the pool's 20 connections
T = TypeVar("T")


class SharedReads:
    """The store reads of the API's hot path (a token's check, a page of the listing), on a few worker threads,
    and identical reads asked while none of them has started done once for all who asked (issue 19).

    With the default limiter (256 threads) two hundred concurrent listings ran on two hundred threads that
    fought for the GIL and the connection pool. Here a read waits for one of STORE_READERS threads; every
    caller asking the same key until then joins it. Each answer is read after its request arrived, as if it
    had run alone: a token revoked before a request came is refused, a workspace made before it is listed.
    """

    def __init__(self, threads: int = STORE_READERS) -> None:
        self.limiter = anyio.CapacityLimiter(threads)
        self._waiting: dict[Hashable, asyncio.Future[Any]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.reads = 0  # reads done (for tests and the benchmark: fewer than the requests under load)

    async def read(self, key: Hashable, work: Callable[[], T]) -> T:
        future = self._waiting.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._waiting[key] = loop.create_future()
            future.add_done_callback(_retrieved)
            task = loop.create_task(self._read(key, future, work))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        result: T = await asyncio.shield(future)
        return result

    async def _read(self, key: Hashable, future: asyncio.Future[Any], work: Callable[[], Any]) -> None:
        try:
            async with self.limiter:
                if self._waiting.get(key) is future:
                    del self._waiting[key]  # from now on, a caller asking the same waits for a read of its own
                self.reads += 1
                result = await anyio.to_thread.run_sync(work, abandon_on_cancel=False)
        except Exception as error:  # every caller who joined gets it, as if it ran alone
            future.set_exception(error)
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(result)
        finally:
            if self._waiting.get(key) is future:
                del self._waiting[key]


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark an error seen: when every caller who asked went away, asyncio would log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is there)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
