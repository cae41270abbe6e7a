"""Layers written by devenv itself, byte for byte the same for the same commit: sorted entries, one
fixed time (the commit's), root-owned, no user or group names (the headers devenv.build.reproducible
writes for the dev image's normalised layers too). Docker applies them like any layer.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from devenv.build.reproducible import tar_entry
from devenv.errors import DevenvError, UsageError

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


def git_commit(folder: Path, ref: str = "HEAD") -> tuple[Path, str, int, bool]:
    """(repository root, full commit, commit time, whether the tree is dirty) of the repo holding `folder`."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(
                f"git {' '.join(args)} in {folder}: {done.stderr.strip() or 'failed'}",
                hint="promote packages a commit: run it inside the project's git repository",
            )
        return done.stdout.strip()

    root = Path(git("rev-parse", "--show-toplevel"))
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    when = int(git("show", "-s", "--format=%ct", commit))
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return root, commit, when, dirty


def code_layer(root: Path, commit: str, *, mtime: int, extra: dict[str, bytes]) -> bytes:
    """The project at `commit` (git archive: tracked files only, never the working tree) under /app,
    plus `extra` files (path -> bytes, like the SBOM), as a reproducible tar."""
    done = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True)
    if done.returncode != 0:
        raise DevenvError(f"git archive {commit[:12]} failed: {done.stderr.decode(errors='replace').strip()}")
    files: dict[str, tuple[bytes, int]] = {}
    links: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as archive:
        for member in archive:
            name = f"{APP_DIR}/{member.name}".rstrip("/")
            if member.issym():
                links[name] = member.linkname
            elif member.isfile():
                handle = archive.extractfile(member)
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
