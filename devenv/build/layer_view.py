"""What the layers below a layer already give at each path, so that a layer keeps only what it changes.

A storage driver decides which unchanged files a step leaves in its layer: overlay2 copies a file up when
a step opens it for writing, even when it writes the same bytes back (useradd and usermod rewrite
/etc/passwd and /etc/shadow and leave /etc/.pwd.lock), while fuse-overlayfs and vfs engines may not. One
step then gives a different layer on two engines. An entry identical to what the layers below give (kind,
mode, owners, extended attributes, and content or link target; times aside, devenv sets them all) changes
nothing when the layer is applied, so the normaliser drops it, and every engine's layer is the same.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Iterable

Seen = tuple[bytes, int, int, int, int, str, str]  # kind, mode, uid, gid, size, link target, extended attributes

OPAQUE = ".wh..wh..opq"  # an OCI whiteout: the folder holds nothing from the layers below
WHITEOUT = ".wh."  # `.wh.NAME`: NAME is removed


def path_of(name: str) -> str:
    """A tar entry's path as the layers below name it: `./etc/passwd` (an imported root's tar), `/etc/passwd`
    and `etc/passwd` are one path."""
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:].lstrip("/")
    return name.rstrip("/")


def seen(member: tarfile.TarInfo) -> Seen:
    kind = tarfile.REGTYPE if member.isreg() else member.type
    xattrs = ";".join(
        f"{key}={value}" for key, value in sorted(member.pax_headers.items()) if key.startswith("SCHILY.xattr.")
    )
    size = member.size if member.isreg() else 0
    # permission bits only: Docker's tar writer adds the file-type bits (0o100644), GNU tar does not (0o644)
    return kind, member.mode & 0o7777, member.uid, member.gid, size, member.linkname, xattrs


class LowerView:
    """Path -> the entry the layers added so far leave there (and the open layer tar that holds its data)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Seen, tarfile.TarFile, tarfile.TarInfo]] = {}
        self._digests: dict[tuple[int, int], str] = {}

    def add_layer(self, archive: tarfile.TarFile, members: Iterable[tarfile.TarInfo]) -> None:
        """Apply a layer's entries, whiteouts included. `archive` must stay open while the view is used."""
        for member in members:
            name = path_of(member.name)
            if not name or name == ".":
                continue
            folder, base = posixpath.split(name)
            if base == OPAQUE:
                self._forget_below(folder)
            elif base.startswith(WHITEOUT):
                removed = posixpath.join(folder, base[len(WHITEOUT) :])
                self._entries.pop(removed, None)
                self._forget_below(removed)
            else:
                self._entries[name] = (seen(member), archive, member)

    def repeats(self, name: str, archive: tarfile.TarFile, member: tarfile.TarInfo) -> bool:
        """Whether `member` (named `name` in `archive`) leaves the path exactly as the layers below do."""
        if member.islnk() or posixpath.basename(name).startswith(WHITEOUT):
            return False
        below = self._entries.get(path_of(name))
        if below is None or below[0] != seen(member):
            return False
        if not member.isreg():
            return True
        return self._digest(below[1], below[2]) == self._digest(archive, member)

    def _forget_below(self, folder: str) -> None:
        prefix = folder + "/" if folder else ""
        for name in [name for name in self._entries if name.startswith(prefix)]:
            del self._entries[name]

    def _digest(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
        key = (id(archive), member.offset_data)
        if key not in self._digests:
            content = archive.extractfile(member)
            digest = hashlib.sha256()
            if content is not None:
                for chunk in iter(lambda: content.read(1 << 20), b""):
                    digest.update(chunk)
            self._digests[key] = digest.hexdigest()
        return self._digests[key]
