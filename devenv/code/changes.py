"""What a one-shot command changed in the project folder it ran in, and writing that back on the client.

Why: `devenv ci run` used to bind-mount the project, so files the tests wrote (coverage.xml, a report)
appeared beside the spec. Through the daemon the folder is uploaded instead (remote engines work alike);
the folder's tar given back after the run is compared with the upload's manifest, and only what was
created or changed travels back, under a size limit. A file the tests deleted is not deleted here.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devenv.code.manifest import human_size
from devenv.code.place import entry_hash, link_hash, member_problem
from devenv.errors import UsageError

_CHUNK = 1 << 20


@dataclass
class Changes:
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    left_out: list[str] = field(default_factory=list)  # over the limit, or names that may not be placed


def changed_files(given: IO[bytes], folder: str, before: Mapping[str, str], out: IO[bytes], limit: int) -> Changes:
    """The members of `given` (a folder's tar, members under `folder/`) that are not in `before` (path ->
    manifest entry) as they are now, written to `out` as a tar of paths inside the folder."""
    changes, links = Changes(), set[str]()
    prefix = folder.rstrip("/") + "/"
    with tarfile.open(fileobj=given, mode="r|") as archive, tarfile.open(fileobj=out, mode="w") as written:
        for member in archive:
            if not member.name.startswith(prefix) or not (member.isfile() or member.issym()):
                continue
            member.name = member.name[len(prefix) :]
            if member_problem(member, links) is not None:
                changes.left_out.append(member.name)
                continue
            if member.issym():
                if before.get(member.name) != link_hash(member.linkname):
                    _add(written, member, None, changes)
                continue
            data = archive.extractfile(member)
            content = data.read() if data is not None else b""
            entry = entry_hash(hashlib.sha256(content).hexdigest(), bool(member.mode & 0o111))
            if before.get(member.name) == entry:
                continue
            if changes.bytes + len(content) > limit:
                changes.left_out.append(f"{member.name} ({human_size(len(content))})")
                continue
            _add(written, member, content, changes)
    return changes


def _add(written: tarfile.TarFile, member: tarfile.TarInfo, content: bytes | None, changes: Changes) -> None:
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    if content is None:
        written.addfile(member)
    else:
        member.mode = 0o755 if member.mode & 0o111 else 0o644
        written.addfile(member, io.BytesIO(content))
        changes.bytes += len(content)
    changes.files.append(member.name)


def write_back(tar: IO[bytes], folder: Path) -> list[str]:
    """Regular files of `tar` written into `folder` (each replaced whole), never outside it: a name that
    leaves the folder or goes through a symlink is refused. Symlinks are not made. The paths written."""
    root = folder.resolve()
    written: list[str] = []
    with tarfile.open(fileobj=tar, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            target = root / member.name
            parent = target.parent
            if (
                member_problem(member, set()) is not None
                or not parent.resolve().is_relative_to(root)
                or target.is_symlink()
            ):
                raise UsageError(
                    f"the tests gave back {member.name!r}, which may not be written into {folder}",
                    hint="write reports inside the project folder",
                )
            parent.mkdir(parents=True, exist_ok=True)
            if not parent.resolve().is_relative_to(root):  # a symlinked folder made meanwhile
                raise UsageError(f"{parent} leaves {folder}: {member.name!r} not written")
            source = archive.extractfile(member)
            partial = parent / f".{target.name}.devenv-partial"
            try:
                with open(partial, "wb") as sink:
                    while source is not None and (chunk := source.read(_CHUNK)):
                        sink.write(chunk)
                os.chmod(partial, 0o755 if member.mode & 0o111 else 0o644)
                partial.replace(target)
            except OSError as error:
                partial.unlink(missing_ok=True)
                raise UsageError(
                    f"could not write {member.name!r} the tests gave back into {folder}: {error.strerror or error}"
                ) from None
            written.append(member.name)
    return written
