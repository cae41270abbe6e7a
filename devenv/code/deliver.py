"""Running the placing script (place.py) in a workspace through any backend: local, ssh:// or a cloud VM.

Why this way: the Backend protocol's put_files goes through the engine's API (Docker's put_archive), never a
bind mount of the daemon's or the client's folder, so remote engines work the same. The archive travels in
parts of PART_BYTES (the daemon never holds a whole upload in memory) into a folder only root can make,
then one exec places or syncs it and removes the parts.
"""

from __future__ import annotations

import json
import secrets
import tarfile
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from devenv.backends.base import HOME_MOUNT, Backend, Handle
from devenv.code import place
from devenv.code.manifest import human_size

PARTS_DIR = "/var/lib/devenv/code"  # under /var/lib: dev cannot plant a symlink where root writes
PART_BYTES = 32 * 1024 * 1024
PLACE_SOURCE = Path(place.__file__).read_text()


def run(
    backend: Backend, handle: Handle, tar: Path | None, job: dict[str, Any], progress: Callable[[str], None]
) -> dict[str, Any]:
    """Send `tar` (None: nothing to send) and the job, run the script; its JSON result (status failed
    with a message when it refused or broke)."""
    folder = f"{PARTS_DIR}/{secrets.token_hex(8)}"
    parts: list[str] = []
    try:
        if tar is not None:
            total, sent = tar.stat().st_size, 0
            with open(tar, "rb") as archive:
                while chunk := archive.read(PART_BYTES):
                    path = f"{folder}/part{len(parts):05d}"
                    backend.put_files(handle, {path: chunk})
                    parts.append(path)
                    sent += len(chunk)
                    progress(f"code: sent {human_size(sent)} of {human_size(total)} to the workspace")
        body = json.dumps({**job, "parts": parts, "home": HOME_MOUNT, "user": "dev"}).encode()
        backend.put_files(handle, {f"{folder}/job.json": body})
    except BaseException:
        if parts:
            _quietly(backend, handle, ["rm", "-rf", folder])
        raise
    stream = backend.exec(handle, ["python3", "-c", PLACE_SOURCE, f"{folder}/job.json"], user="root", workdir="/")
    output = b"".join(chunk for _which, chunk in stream).decode(errors="replace").strip()
    last = output.splitlines()[-1] if output else ""
    try:
        result = json.loads(last)
    except ValueError:
        result = {"status": "failed", "message": output[-600:] or "the placing script printed nothing"}
    if stream.exit_code not in (0, None) and result.get("status") != "failed":
        result = {"status": "failed", "message": output[-600:]}
    return result if isinstance(result, dict) else {"status": "failed", "message": str(result)[:600]}


def subset(tar: Path, names: Collection[str], into: Path) -> Path | None:
    """A tar of only `names` from `tar` (what a sync writes), in `into`; None when there is none to send."""
    wanted = set(names)
    if not wanted:
        return None
    fd, name = tempfile.mkstemp(dir=into, prefix=".subset-", suffix=".tar")
    out_path = Path(name)
    try:
        with (
            open(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as out,
            tarfile.open(tar, mode="r:") as source,
        ):
            for member in source:
                if member.name in wanted:
                    out.addfile(member, source.extractfile(member) if member.isfile() else None)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return out_path


def _quietly(backend: Backend, handle: Handle, argv: list[str]) -> None:
    try:
        for _chunk in backend.exec(handle, argv, user="root", workdir="/"):
            pass
    except Exception:
        pass
