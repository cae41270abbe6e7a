"""The daemon's uploads of project code: content-addressed tars under DEVENV_HOME/code, checked on arrival.

Why a store and not the request: an upload goes once (`PUT /v1/code`), then `up` and `sync` name it by
hash. Each arrives in a temporary file and is renamed to <sha256>.tar only once every member passed the
checks (place.member_problem): a refused or cut upload leaves nothing. Who uploaded a hash is marked, so
knowing a hash (shown in a workspace's record) is not a way to another person's code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv.code.manifest import Manifest, max_code_bytes, scan
from devenv.errors import BodyTooLarge, UsageError

HASH_RE = re.compile(r"[0-9a-f]{64}")
KEPT_PER_PERSON = 8  # uploads each person keeps beyond those their workspaces name


@dataclass
class Incoming:
    """One upload on its way to disk: a temporary file, hashed and counted as it is written."""

    path: Path
    limit: int
    handle: Any = None
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise BodyTooLarge(
                f"the uploaded code is over this daemon's limit of {self.limit} bytes",
                hint="leave large files out with .gitignore or .devenvignore; an admin raises the "
                "limit with DEVENV_MAX_CODE_BYTES",
            )
        self.digest.update(chunk)
        self.handle.write(chunk)

    def discard(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.close()
        self.path.unlink(missing_ok=True)


class CodeStore:
    def __init__(self, root: Path, limit: int | None = None) -> None:
        self.root = root
        self.limit = limit if limit is not None else max_code_bytes()

    def begin(self) -> Incoming:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".incoming-", suffix=".tar")
        incoming = Incoming(Path(name), self.limit)
        incoming.handle = os.fdopen(fd, "wb")
        return incoming

    def commit(self, incoming: Incoming, person: str) -> dict[str, Any]:
        """Check the archive, then keep it under its hash; the temporary file is gone either way."""
        try:
            incoming.handle.close()
            with open(incoming.path, "rb") as stream:
                manifest = scan(stream)
            digest = incoming.digest.hexdigest()
            self._write_json(self.root / f"{digest}.json", {"entries": manifest.entries, "bytes": manifest.bytes})
            os.replace(incoming.path, self.root / f"{digest}.tar")
        finally:
            incoming.discard()
        marks = self.root / f"{digest}.by"
        marks.mkdir(exist_ok=True, mode=0o700)
        (marks / _person_key(person)).touch()  # touched again by a repeated upload: its mtime orders prune
        return {"hash": digest, "files": manifest.files, "bytes": manifest.bytes, "size": incoming.size}

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".manifest-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(name, path)

    def require(self, digest: str, person: str, *, admin: bool = False) -> None:
        """Raise unless `digest` was uploaded (by `person`, unless an admin asks)."""
        if not HASH_RE.fullmatch(digest or "") or not self.tar(digest).is_file():
            raise UsageError(
                f"no uploaded code {digest[:80]!r} on this daemon",
                hint="upload it again: `devenv up` or `devenv sync` send the folder first",
            )
        if not admin and not (self.root / f"{digest}.by" / _person_key(person)).exists():
            raise UsageError(
                f"no uploaded code {digest[:16]} of {person}'s on this daemon",
                hint="upload it again: `devenv up` or `devenv sync` send the folder first",
            )

    def prune(self, person: str, referenced: set[str], *, keep: int = KEPT_PER_PERSON) -> list[str]:
        """Forget all but `person`'s newest `keep` uploads, except those a workspace names (`referenced`); an
        upload nobody marks any more is deleted. Without it a member could fill the daemon's disk, one upload
        under the limit at a time. Answers the hashes deleted."""
        key = _person_key(person)
        marks = sorted(self.root.glob(f"*.by/{key}"), key=lambda mark: mark.stat().st_mtime, reverse=True)
        deleted = []
        for mark in marks[keep:]:
            digest = mark.parent.name.removesuffix(".by")
            if digest in referenced:
                continue
            mark.unlink(missing_ok=True)
            if not any(mark.parent.iterdir()):
                for path in (self.tar(digest), self.root / f"{digest}.json"):
                    path.unlink(missing_ok=True)
                mark.parent.rmdir()
                deleted.append(digest)
        return deleted

    def tar(self, digest: str) -> Path:
        return self.root / f"{digest}.tar"

    def manifest(self, digest: str) -> Manifest:
        data = json.loads((self.root / f"{digest}.json").read_text())
        return Manifest(dict(data["entries"]), int(data["bytes"]))


def _person_key(person: str) -> str:
    return hashlib.sha256(person.encode("utf-8", "surrogateescape")).hexdigest()[:32]
