"""The daemon's API under load (issue 19): GET /v1/workspaces with 10,000 records, against a floor.

    python tests/bench/bench_api_load.py [--records 10000] [--clients 200] [--rounds 3] [--per-client 5]

A real devenvd listens on its unix socket and on TCP (bearer tokens). Its store gets N stopped workspace
records (a few owners, some grants) through the daemon's own tables before it starts: no containers.
Measured, as an admin token and as a member token (whose listing is filtered by visibility):

(a) one client, sequential requests on one keep-alive connection: p50/p99 latency;
(b) C concurrent keep-alive clients (raw asyncio sockets: the load generator must stay cheaper than the
    server on a 2-core machine), R rounds, each client issuing K requests: throughput, p50, p99.

The floor is GET /v1/health (no token, no store) on the same server in the same run: the server's ceiling.
The issue's figures before the work (p50 1.23 s, p99 4.75 s, ~150 req/s) are printed beside ours.
Not a timed test: it prints figures and ratios; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert

from devenv.daemon.store.db import make_engine, migrate, session_factory
from devenv.daemon.store.tables import Grant, Workspace
from devenv.testing.network import free_port

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd

ISSUE_THROUGHPUT = 150.0  # req/s, 200 clients, before (issue 19)
ISSUE_P50, ISSUE_P99 = 1.23, 4.75  # seconds
OWNERS = ("alice", "bob", "carol", "dave", "erin")
MEMBER = "bob"


def fill_store(daemon: Devenvd, records: int) -> None:
    """N stopped records, owners in turn, and grants to the member on a tenth of the others'."""
    engine = make_engine(f"sqlite:///{daemon.home / 'devenv.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    now = dt.datetime.now(dt.UTC)
    rows, grants = [], []
    for i in range(records):
        owner = OWNERS[i % len(OWNERS)]
        name = f"ws-{i:05d}"
        rows.append(
            {
                "name": name,
                "owner": owner,
                "backend": "local",
                "desired": "stopped",
                "state": "stopped",
                "generation": 1,
                "ports": [8888],
                "image_tag": "devenv/bench:0",
                "ever_ran": 1,
                "created_at": now,
                "updated_at": now,
                "autostop_seconds": 3600,
            }
        )
        if owner != MEMBER and i % 10 == 0:
            grants.append(
                {"workspace": name, "person": MEMBER, "ssh": True, "jupyter": i % 20 == 0, "granted_by": owner}
            )
    with sessions.begin() as session:
        session.execute(insert(Workspace), rows)
        session.execute(insert(Grant), grants)
    engine.dispose()


def token(daemon: Devenvd, *args: str) -> str:
    made = daemon.token("create", *args)
    if made.returncode != 0:
        raise RuntimeError(made.stderr)
    return made.stdout.strip()


@dataclass
class Target:
    host: str | None
    port: int | None
    unix: str | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix is not None:
            return await asyncio.open_unix_connection(self.unix)
        assert self.host is not None and self.port is not None
        return await asyncio.open_connection(self.host, self.port)


def request_bytes(path: str, bearer: str | None) -> bytes:
    auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    return f"GET {path} HTTP/1.1\r\nHost: devenvd\r\n{auth}Accept: application/json\r\n\r\n".encode()


async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> float:
    """One request on an open keep-alive connection; its latency. The answer must be a 200 with its body."""
    started = time.perf_counter()
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for row in head.split(b"\r\n"):
        if row.lower().startswith(b"content-length:"):
            length = int(row.split(b":", 1)[1])
    await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"answer {status.decode()}: {head.decode(errors='replace')}")
    return time.perf_counter() - started


async def sequential(target: Target, raw: bytes, count: int) -> list[float]:
    reader, writer = await target.open()
    try:
        await one(reader, writer, raw)  # warm the connection
        return [await one(reader, writer, raw) for _ in range(count)]
    finally:
        writer.close()


async def concurrent(
    target: Target, raw: bytes | list[bytes], clients: int, per_client: int
) -> tuple[list[float], float]:
    """`clients` connections, opened first; then each sends `per_client` requests in turn (raw, or the i-th of
    a list for client i). (latencies, wall)"""
    connections = await asyncio.gather(*(target.open() for _ in range(clients)))
    go = asyncio.Event()

    async def client(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[float]:
        mine = raw[index % len(raw)] if isinstance(raw, list) else raw
        await go.wait()
        return [await one(reader, writer, mine) for _ in range(per_client)]

    tasks = [asyncio.create_task(client(i, r, w)) for i, (r, w) in enumerate(connections)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return [latency for result in results for latency in result], wall


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def report_single(label: str, latencies: list[float]) -> None:
    print(
        f"  single   {label:<34} p50 {pct(latencies, 0.5) * 1000:7.1f} ms  p99 {pct(latencies, 0.99) * 1000:7.1f} ms"
        f"  (target p99 < 50 ms) {'ok' if pct(latencies, 0.99) < 0.05 else 'OVER'}   [{load_line()}]"
    )


def report_load(label: str, rounds: list[tuple[list[float], float]], floor: float | None) -> float:
    latencies = [value for result, _ in rounds for value in result]
    throughput = statistics.median(len(result) / wall for result, wall in rounds)
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    versus = f"  floor ratio {throughput / floor:4.2f}" if floor else ""
    verdict = "ok" if throughput >= 5 * ISSUE_THROUGHPUT and p99 < 0.4 else "OVER TARGET"
    print(
        f"  {len(rounds)} rounds {label:<34} {throughput:7.0f} req/s  p50 {p50 * 1000:7.1f} ms  "
        f"p99 {p99 * 1000:7.1f} ms  x{throughput / ISSUE_THROUGHPUT:4.1f} the issue's req/s "
        f"(p50 {ISSUE_P50 / p50:4.1f}x, p99 {ISSUE_P99 / p99:4.1f}x better){versus}  {verdict}   [{load_line()}]"
    )
    return throughput


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--single", type=int, default=200)
    args = parser.parse_args()

    daemon = Devenvd()
    daemon.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    admin_token = token(daemon, "bench-admin", "--admin")
    member_token = token(daemon, MEMBER)
    fill_store(daemon, args.records)
    port = free_port()
    daemon.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    tcp = Target("127.0.0.1", port)
    unix = Target(None, None, str(daemon.home / "devenvd.sock"))
    health = request_bytes("/v1/health", None)
    cases = [
        ("admin token (TCP)", tcp, request_bytes("/v1/workspaces", admin_token)),
        ("member token (TCP, filtered)", tcp, request_bytes("/v1/workspaces", member_token)),
        ("socket owner (unix socket)", unix, request_bytes("/v1/workspaces", None)),
    ]
    # every client its own page (?after=): no two requests alike, so no read is shared (daemon/store/db.py SharedReads)
    pages = [
        request_bytes(f"/v1/workspaces?after=ws-{i * (args.records // args.clients):05d}", admin_token)
        for i in range(args.clients)
    ]
    loads: list[tuple[str, Target, bytes | list[bytes]]] = [*cases, ("admin token, a page per client", tcp, pages)]
    print(
        f"{args.records} records, {args.clients} clients x {args.per_client} requests, {args.rounds} rounds, "
        f"{os.cpu_count()} cores  [{load_line()}]"
    )
    try:

        async def run() -> None:
            report_single("floor: GET /v1/health", await sequential(tcp, health, args.single))
            for label, target, raw in cases:
                report_single(f"GET /v1/workspaces {label}", await sequential(target, raw, args.single))
            floor = report_load(
                "floor: GET /v1/health",
                [await concurrent(tcp, health, args.clients, args.per_client) for _ in range(args.rounds)],
                None,
            )
            for label, target, raws in loads:
                report_load(
                    f"GET /v1/workspaces {label}",
                    [await concurrent(target, raws, args.clients, args.per_client) for _ in range(args.rounds)],
                    floor,
                )

        asyncio.run(run())
    finally:
        daemon.stop()
        import shutil

        shutil.rmtree(daemon.home, ignore_errors=True)


if __name__ == "__main__":
    main()
