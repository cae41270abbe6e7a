"""Layers written by devenv itself, byte for byte the same for the same commit: sorted entries, one
fixed time (the commit's), root-owned, no user or group names (the headers devenv.build.reproducible
writes for the dev image's normalised layers too). Docker applies them like any layer.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import IO

from devenv.build.reproducible import tar_entry

APP_DIR = "app"  # /app in the production image
SBOM_PATH = "usr/share/devenv/sbom.cdx.json"


def _info(name: str, *, mtime: int, mode: int, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    return tar_entry(name, mtime=mtime, mode=mode, kind=kind, size=size)  # root-owned, no names


def _parents(names: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for name in names:
        for parent in PurePosixPath(name).parents:
            if str(parent) != ".":
                found.add(str(parent))
    return sorted(found)


def code_layer(archive: IO[bytes], *, mtime: int, extra: dict[str, bytes]) -> bytes:
    """The project's files (`archive`: git archive's tar of one commit) under /app, plus `extra` files (path ->
    bytes, like the SBOM), as a reproducible tar."""
    files: dict[str, tuple[bytes, int]] = {}
    links: dict[str, str] = {}
    with tarfile.open(fileobj=archive, mode="r|") as source:
        for member in source:
            name = f"{APP_DIR}/{member.name}".rstrip("/")
            if member.issym():
                links[name] = member.linkname
            elif member.isfile():
                handle = source.extractfile(member)
                files[name] = (handle.read() if handle else b"", 0o755 if member.mode & 0o111 else 0o644)
    for path, data in extra.items():
        files[path.lstrip("/")] = (data, 0o644)
    return _tar(files, links, mtime=mtime)


def whiteout_layer(paths: Iterable[str], *, mtime: int) -> bytes:
    """A layer that deletes `paths` (absolute) from the layers below: OCI whiteout entries."""
    names = sorted({path.strip("/") for path in paths if path.strip("/")})
    files = {}
    for name in names:
        path = PurePosixPath(name)
        marker = f".wh.{path.name}" if str(path.parent) == "." else f"{path.parent}/.wh.{path.name}"
        files[marker] = (b"", 0o644)
    return _tar(files, {}, mtime=mtime)


def _tar(files: dict[str, tuple[bytes, int]], links: dict[str, str], *, mtime: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries = sorted({*files, *links, *_parents([*files, *links])})
        for name in entries:
            if name in files:
                data, mode = files[name]
                archive.addfile(_info(name, mtime=mtime, mode=mode, size=len(data)), io.BytesIO(data))
            elif name in links:
                info = _info(name, mtime=mtime, mode=0o777, kind=tarfile.SYMTYPE)
                info.linkname = links[name]
                archive.addfile(info)
            else:
                archive.addfile(_info(name, mtime=mtime, mode=0o755, kind=tarfile.DIRTYPE))
    return buffer.getvalue()
