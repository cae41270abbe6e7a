"""Fetching locked artifacts (wheels, debs) on the host into a content-addressed cache.

Every file is verified against the lock's SHA256 before it is used; a mismatch is an error, never
a silent re-download. Files already in the cache are not fetched again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.download import DigestMismatch, DownloadFailed, download_verified
from devenv.errors import BuildError
from devenv.progress import Progress, emit
from devenv.resources import artifact_path

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Artifact:
    filename: str
    url: str
    sha256: str


def cached_path(cache: Path, artifact: Artifact) -> Path:
    return artifact_path(cache, artifact.sha256, artifact.filename)


def _download(client: httpx.Client, cache: Path, artifact: Artifact) -> Path:
    target = cached_path(cache, artifact)
    if target.is_file():
        return target
    try:
        download_verified(client, artifact.url, artifact.sha256, target)
    except DownloadFailed as exc:
        raise BuildError(
            f"could not fetch {artifact.filename} from {artifact.url}: {exc}",
            hint="check the network, or re-run `devenv lock --upgrade` if it was removed",
        ) from exc
    except DigestMismatch as exc:
        raise BuildError(
            f"{artifact.filename} from {artifact.url} has sha256 {exc.found}, but devenv.lock pins {artifact.sha256}",
            hint="the server sent different bytes than were locked; do not build until you know why",
        ) from None
    return target


def fetch_all(artifacts: list[Artifact], cache: Path, progress: Progress | None, *, what: str) -> list[Path]:
    """Fetch (or find in the cache) every artifact, in parallel; paths come back in input order."""
    missing = [a for a in artifacts if not cached_path(cache, a).is_file()]
    if missing:
        emit(progress, "phase", f"fetching {len(missing)} of {len(artifacts)} {what} (the rest are cached)")
    import httpx  # only a build that fetches pays for importing it

    paths: list[Path] = []
    with (
        httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0)) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        for path in pool.map(lambda artifact: _download(client, cache, artifact), artifacts):
            paths.append(path)
            if missing:
                emit(progress, "download", path.name, current=len(paths), total=len(artifacts))
    return paths
