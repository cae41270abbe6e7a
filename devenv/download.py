"""One download of a file whose SHA256 is known: streamed, hashed as it arrives, and moved onto its path only
when the bytes match. The lock (sdists) and the build (wheels, debs) each say what a failure means to them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


class DownloadFailed(Exception):
    """The server could not be reached or answered an error; the partial file is gone."""


class DigestMismatch(Exception):
    """The server sent other bytes than expected; `found` is their SHA256. Nothing was kept."""

    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found


def download_verified(client: httpx.Client, url: str, sha256: str, target: Path) -> None:
    import httpx

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with client.stream("GET", url) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except (httpx.HTTPError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(str(exc)) from exc
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise DigestMismatch(digest.hexdigest())
    partial.replace(target)
