"""What an upload holds: each file's hash (its manifest), read from the archive while its members are checked.

The daemon keeps the manifest of what it placed in a workspace; `devenv sync` compares it with what the
workspace holds now and what the new upload holds (place.plan), so an edit made inside is never lost silently.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from devenv.code.place import entry_hash, link_hash, member_problem
from devenv.errors import DevenvError, UsageError, WorkspaceBusy

MAX_CODE_ENV = "DEVENV_MAX_CODE_BYTES"
DEFAULT_MAX_CODE = 512 * 1024 * 1024
MAX_MEMBERS = 200_000
_CHUNK = 1 << 20


def max_code_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The largest upload of code this daemon takes (DEVENV_MAX_CODE_BYTES, default 512 MiB)."""
    raw = (environ.get(MAX_CODE_ENV) or "").strip()
    if not raw:
        return DEFAULT_MAX_CODE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{MAX_CODE_ENV}={raw!r}: expected a number of bytes above 0")
    return value


def human_size(count: float) -> str:
    """1234567 -> '1.2 MB' (for people: progress lines and messages)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    return f"{count:.1f} GB"


class CodeConflict(WorkspaceBusy):
    """A sync would overwrite edits made inside the workspace (409; exit 1)."""

    code = "code_conflict"


class CodeTooLarge(DevenvError):
    """The project folder is over the daemon's limit for code (DEVENV_MAX_CODE_BYTES)."""

    code = "code_too_large"


class BadArchive(UsageError):
    """An uploaded archive with a member that may not be placed (400)."""

    code = "code_refused"


@dataclass
class Manifest:
    entries: dict[str, str] = field(default_factory=dict)  # path -> sha256 (+x), or link:sha256 of the target
    bytes: int = 0

    @property
    def files(self) -> int:
        return len(self.entries)


def scan(stream: IO[bytes]) -> Manifest:
    """Check every member of an uncompressed tar and hash its files; BadArchive names the first bad member."""
    manifest, links, seen = Manifest(), set[str](), set[str]()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for count, member in enumerate(archive, 1):
                name = member.name.rstrip("/") if member.isdir() else member.name
                problem = member_problem(member, links)
                if problem is None and name in seen:
                    problem = "a name that comes twice"
                if problem is None and count > MAX_MEMBERS:
                    problem = f"more than {MAX_MEMBERS} entries in one upload"
                if problem is not None:
                    raise BadArchive(
                        f"the uploaded code was refused: {name[:200]!r} has {problem}",
                        hint="upload only the project folder's own files (`devenv up` or "
                        "`devenv sync` make such an archive)",
                    )
                seen.add(name)
                if member.issym():
                    manifest.entries[name] = link_hash(member.linkname)
                elif member.isfile():
                    manifest.entries[name] = _hash(archive, member)
                    manifest.bytes += member.size
    except tarfile.TarError as error:
        raise BadArchive(
            f"the uploaded code is not a tar archive ({error})",
            hint="`devenv up` and `devenv sync` send the folder as a tar",
        ) from None
    return manifest


def _hash(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    source = archive.extractfile(member)
    digest = hashlib.sha256()
    if source is not None:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return entry_hash(digest.hexdigest(), bool(member.mode & 0o111))


def conflict_error(workspace: str, conflicts: list[list[str]]) -> CodeConflict:
    shown = "; ".join(f"{path} ({why})" for path, why in conflicts[:10])
    more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
    return CodeConflict(
        f"sync refused: {len(conflicts)} file(s) changed both in workspace {workspace} and here: {shown}{more}",
        hint=f"copy them out first (`devenv exec {workspace} -- cat PATH`), or `devenv sync {workspace} --force` "
        "to overwrite them",
        data={"conflicts": [path for path, _why in conflicts]},
    )


class SyncFailed(WorkspaceBusy):
    """The placing script in the workspace refused or broke (409): the message says what."""

    code = "code_sync_failed"
