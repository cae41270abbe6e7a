"""A real devenvd on TCP under attack (issue 17): a body over the limit is refused before it is read,
whoever sends it, and a thousand open follow streams do not slow the API down.

Figures are printed (run with -s); the bounds asserted are loose enough for two busy cores.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from devenv.testing.network import free_port
from harness.devenvd import Devenvd
from harness.load import MIB, Streams, list_latencies, raise_open_files, send_body, summary, watch_rss

ATTACK = 300 * MIB
RSS_GROWTH = 50 * MIB
STREAMS = 1000


def make_token(daemon: Devenvd, name: str, *args: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "devenv.daemon.process.main", "token", "create", name, *args],
        env=daemon.env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Devenvd, int, str, str]]:
    """The daemon, its port, a member's token and an admin's."""
    port = free_port()
    daemon = Devenvd()
    daemon.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    try:
        member, admin = make_token(daemon, "alice"), make_token(daemon, "ops", "--admin")
        list_latencies(port, member, 20)  # warm: the first requests import and allocate what every later one uses
        yield daemon, port, member, admin
    finally:
        daemon.cleanup()


@pytest.mark.parametrize(
    ("who", "path", "chunked", "status"),
    [
        ("anonymous", "/v1/workspaces", False, 401),
        ("anonymous", "/v1/workspaces", True, 401),
        ("member", "/v1/workspaces", False, 413),
        ("member", "/v1/workspaces", True, 413),
        ("anonymous", "/v1/hooks/git", False, 413),
        ("anonymous", "/v1/hooks/git", True, 413),
    ],
)
def test_a_300_mb_body_is_refused_before_it_is_read(
    served: tuple[Devenvd, int, str, str], who: str, path: str, chunked: bool, status: int
) -> None:
    daemon, port, member, _admin = served
    assert daemon.process is not None
    headers = {"Authorization": f"Bearer {member}"} if who == "member" else {}
    if path == "/v1/hooks/git":
        headers |= {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    control = send_body(port, path, 4096, headers=headers)  # a small body is read and answered by the route
    assert control.status in (401, 422) and control.payload["code"] in ("unauthorized", "usage"), control
    with watch_rss(daemon.process.pid) as rss:
        answer = send_body(port, path, ATTACK, headers=headers, chunked=chunked)
    print(
        f"\n{who} {'chunked' if chunked else 'declared'} 300 MB POST {path}: {answer.status} in "
        f"{answer.seconds * 1000:.0f} ms after {answer.sent / MIB:.0f} MiB sent; daemon RSS "
        f"{rss.baseline / MIB:.0f} -> peak {rss.peak / MIB:.0f} MiB (+{rss.growth / MIB:.1f})"
    )
    assert answer.status == status, answer
    assert answer.payload["code"] == ("unauthorized" if status == 401 else "body_too_large")
    assert answer.closed  # not drained: the connection ends with the answer
    assert answer.sent < 64 * MIB  # the rest was never sent: the daemon answered long before
    assert rss.growth <= RSS_GROWTH
    assert daemon.process.poll() is None


def test_a_thousand_follow_streams_do_not_slow_the_api(served: tuple[Devenvd, int, str, str]) -> None:
    daemon, port, member, admin = served
    raise_open_files(STREAMS * 2 + 256)
    alone = list_latencies(port, member, 200)
    streams = Streams(port, "/v1/events/follow", STREAMS, token=admin)
    try:
        loaded = list_latencies(port, member, 200)
        daemon.client.set_secret("LIMITS_PROBE", "x")  # an event: every stream is alive and gets it
        streams.wait_for(b"secret set LIMITS_PROBE", 60)
    finally:
        streams.close()
    (p50_alone, p99_alone), (p50, p99) = summary(alone), summary(loaded)
    print(
        f"\nGET /v1/workspaces: alone p50 {p50_alone * 1000:.1f} ms p99 {p99_alone * 1000:.1f} ms; with "
        f"{STREAMS} open follow streams p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms"
    )
    assert p99 < 1.0
