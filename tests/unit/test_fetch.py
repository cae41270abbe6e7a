"""Fetching locked artifacts: verified against the lock's SHA256, cached by content, never half-kept.

Served by a real HTTP server on 127.0.0.1 (http.server in a thread).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from devenv.build.fetch import Artifact, cached_path, fetch_all
from devenv.errors import BuildError
from devenv.progress import ProgressEvent


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def _artifact(base_url: str, root: Path, name: str, content: bytes, sha256: str | None = None) -> Artifact:
    (root / name).write_bytes(content)
    return Artifact(name, f"{base_url}/{name}", sha256 or hashlib.sha256(content).hexdigest())


def test_fetches_verifies_and_caches_by_content(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    cache = tmp_path / "cache"
    artifacts = [_artifact(base_url, root, f"pkg{i}.whl", f"wheel {i}".encode() * 1000) for i in range(5)]
    events: list[ProgressEvent] = []
    paths = fetch_all(artifacts, cache, events.append, what="wheels")
    assert [p.read_bytes() for p in paths] == [(root / a.filename).read_bytes() for a in artifacts]
    assert paths == [cached_path(cache, a) for a in artifacts]
    assert [e.current for e in events if e.kind == "download"] == [1, 2, 3, 4, 5]
    for artifact in artifacts:  # a second fetch is served from the cache, even with the server's files gone
        (root / artifact.filename).unlink()
    quiet: list[ProgressEvent] = []
    assert fetch_all(artifacts, cache, quiet.append, what="wheels") == paths
    assert quiet == []


def test_a_hash_mismatch_is_an_error_and_nothing_is_kept(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    cache = tmp_path / "cache"
    tampered = _artifact(base_url, root, "evil.whl", b"not what was locked", sha256="0" * 64)
    with pytest.raises(BuildError) as failure:
        fetch_all([tampered], cache, None, what="wheels")
    assert "evil.whl" in failure.value.message and "0" * 64 in failure.value.message
    assert not any(path.is_file() for path in cache.rglob("*"))


def test_a_missing_file_is_an_error_naming_the_url(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served
    gone = Artifact("gone.whl", f"{base_url}/gone.whl", "1" * 64)
    with pytest.raises(BuildError) as failure:
        fetch_all([gone], tmp_path / "cache", None, what="wheels")
    assert f"{base_url}/gone.whl" in failure.value.message and "404" in failure.value.message
