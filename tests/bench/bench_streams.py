"""The daemon under attack, as figures for issue 17 (findings 7 and 8), against a real devenvd on TCP.

    python tests/bench/bench_streams.py [--streams 1000] [--requests 300] [--body-mb 300]

1. A huge body: the daemon's RSS before and at its peak while a 300 MB POST is sent (anonymous and
   declared, a member's chunked one, an anonymous webhook), and the time until the 401/413.
2. GET /v1/workspaces p50/p99 alone (the floor), with N open admin follow streams, and with N
   member follow streams while events fire (each event asks every member stream what it may see).

Bodies are sent from one reused buffer (never held whole), streams are raw sockets.
Not a timed test: it prints figures and ratios; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

from devenv.testing.network import free_port

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd
from harness.load import MIB, Streams, list_latencies, raise_open_files, send_body, summary, watch_rss


def make_token(daemon: Devenvd, name: str, *args: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "devenv.daemon.process.main", "token", "create", name, *args],
        env=daemon.env,
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip()


def latency_line(label: str, values: list[float], floor: tuple[float, float] | None = None) -> tuple[float, float]:
    p50, p99 = summary(values)
    ratio = f"   ratio to floor p50 {p50 / floor[0]:5.2f}  p99 {p99 / floor[1]:5.2f}" if floor else ""
    print(f"{label:<58} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms (target < 100){ratio}")
    return p50, p99


def bodies(daemon: Devenvd, port: int, member: str, size: int) -> None:
    assert daemon.process is not None
    signed = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    bearer = {"Authorization": f"Bearer {member}"}
    cases = [
        ("anonymous, declared length, /v1/workspaces", "/v1/workspaces", {}, False),
        ("anonymous, chunked, /v1/workspaces", "/v1/workspaces", {}, True),
        ("member, declared length, /v1/workspaces", "/v1/workspaces", bearer, False),
        ("member, chunked, /v1/workspaces", "/v1/workspaces", bearer, True),
        ("webhook, declared length, /v1/hooks/git", "/v1/hooks/git", signed, False),
        ("webhook, chunked, /v1/hooks/git", "/v1/hooks/git", signed, True),
    ]
    print(f"\n{size // MIB} MB bodies (target: refused in milliseconds, daemon RSS +50 MB at most)")
    for label, path, headers, chunked in cases:
        with watch_rss(daemon.process.pid) as rss:
            answer = send_body(port, path, size, headers=headers, chunked=chunked)
        print(
            f"  {label:<44} {answer.status} {answer.payload.get('code', ''):<15} in {answer.seconds * 1000:6.1f} ms"
            f"   RSS {rss.baseline / MIB:6.1f} -> peak {rss.peak / MIB:6.1f} MiB (+{rss.growth / MIB:5.1f})"
            f"   {'closed' if answer.closed else 'KEPT OPEN'}"
        )


def streams(daemon: Devenvd, port: int, member: str, admin: str, count: int, requests: int) -> None:
    raise_open_files(count * 2 + 256)
    print(f"\nGET /v1/workspaces with open GET /v1/events/follow streams ({requests} requests each)")
    floor = latency_line("  no stream open (floor)", list_latencies(port, member, requests))
    followers = Streams(port, "/v1/events/follow", count, token=admin)
    try:
        latency_line(f"  {count} admin follow streams, quiet", list_latencies(port, member, requests), floor)
    finally:
        followers.close()
    followers = Streams(port, "/v1/events/follow", count, token=member)
    stop = threading.Event()
    fired = 0

    def fire() -> None:  # stored events, each offered to every stream (a member's secret: not theirs to see)
        nonlocal fired
        while not stop.wait(0.1):
            daemon.client.set_secret("BENCH_EVENT", str(fired))
            fired += 1

    firing = threading.Thread(target=fire, daemon=True)
    firing.start()
    try:
        loaded = list_latencies(port, member, requests)
    finally:
        stop.set()
        firing.join(10)
        followers.close()
    latency_line(f"  {count} member follow streams, {fired} events fired", loaded, floor)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--body-mb", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    daemon = Devenvd()
    daemon.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    try:
        member, admin = make_token(daemon, "bench"), make_token(daemon, "bench-admin", "--admin")
        list_latencies(port, member, 20)  # warm
        bodies(daemon, port, member, args.body_mb * MIB)
        streams(daemon, port, member, admin, args.streams, args.requests)
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    main()
