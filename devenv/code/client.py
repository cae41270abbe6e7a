"""The client's half of code upload: the folder's tar streamed as a raw body (PUT /v1/code), and sync.

Why not Client.call: a project is up to hundreds of MB; it is written to a temporary file (to know its
length and hash), then sent in chunks with progress, never as JSON. A daemon that refuses it at once
(413: over its limit) answers before the body is sent: that answer is read even when the send breaks.
"""

from __future__ import annotations

import http.client
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from devenv.code.collect import Collected, collect, describe, folder_name, too_large, write_tar
from devenv.code.manifest import human_size
from devenv.errors import BodyTooLarge

if TYPE_CHECKING:
    from devenv.client import Client

UPLOAD_TIMEOUT = 600.0
SYNC_TIMEOUT = 900.0
CHUNK = 1 << 20
Progress = Callable[[int, int], None]  # (bytes sent, total)


def put_code(client: Client, source: str | Path | BinaryIO, progress: Progress | None = None) -> dict[str, Any]:
    """Upload a tar (a path or a seekable binary file) as the raw body; the daemon's {hash, files, bytes}."""
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            return put_code(client, stream, progress)
    total = os.fstat(source.fileno()).st_size if hasattr(source, "fileno") else _length(source)
    connection = client.connected(UPLOAD_TIMEOUT)
    try:
        return _send(client, connection, source, total, progress)
    finally:
        connection.close()


def _length(source: BinaryIO) -> int:
    here = source.tell()
    end = source.seek(0, os.SEEK_END)
    source.seek(here)
    return end - here


def _send(
    client: Client, connection: http.client.HTTPConnection, source: BinaryIO, total: int, progress: Progress | None
) -> dict[str, Any]:
    import json

    connection.putrequest("PUT", "/v1/code")
    connection.putheader("Content-Type", "application/x-tar")
    connection.putheader("Content-Length", str(total))
    connection.putheader("Accept", "application/json")
    if client.target.token:
        connection.putheader("Authorization", f"Bearer {client.target.token}")
    sent = 0
    try:
        connection.endheaders()
        while chunk := source.read(CHUNK):
            connection.send(chunk)
            sent += len(chunk)
            if progress is not None:
                progress(sent, total)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon answered (and closed) before the body was all sent: read why
    try:
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise client._unreachable(exc) from exc
    if response.status >= 400:
        raise client._error(response.status, raw)
    answer: dict[str, Any] = json.loads(raw)
    return answer


def sync(
    client: Client, name: str, code: dict[str, Any], *, force: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    body = {**code, "force": force, "dry_run": dry_run}
    answer: dict[str, Any] = client.call("POST", f"/v1/workspaces/{quote(name)}/sync", body, timeout=SYNC_TIMEOUT)
    return answer


def upload_folder(
    client: Client, folder: Path, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], str]:
    """Collect `folder`, upload it; the code reference `up` and `sync` send, and the line that says what went."""
    collected = collect(folder)
    with tempfile.TemporaryFile(prefix="devenv-code-") as stream:
        write_tar(collected, stream)
        stream.seek(0)

        def sent(done: int, total: int) -> None:
            if progress is not None:
                progress(f"uploading code: {human_size(done)} / {human_size(total)}")

        try:
            answer = put_code(client, stream, sent)
        except BodyTooLarge as error:
            raise too_large(collected, None, error.message) from None
    source: dict[str, str | int | None] = {"path": str(collected.folder)[:500]}
    if collected.git is not None:
        source.update({key: value for key, value in collected.git.items()})
    ref = {"hash": answer["hash"], "folder": folder_name(collected.folder), "source": source}
    return ref, describe(collected, answer.get("bytes", collected.bytes)) + _notes(collected)


def _notes(collected: Collected) -> str:
    if not collected.notes:
        return ""
    shown = "; ".join(collected.notes[:3]) + (f"; {len(collected.notes) - 3} more" if len(collected.notes) > 3 else "")
    return f"\n  left out: {shown}"
