"""What the slurm backend sends over its ssh connection and reads back, in plain text and tar: the files of a
workspace's folder, its launch request, a `podman exec` line inside an allocation, the listing's folder lines,
and a command's output as it arrives."""

from __future__ import annotations

import io
import json
import select
import shlex
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from devenv.backends.base import LaunchRequest
from devenv.backends.slurm.jobs import Folder, Ready
from devenv.errors import BackendError

_q = shlex.quote


def folder_tar(files: Mapping[str, bytes]) -> bytes:
    """A tar of relative paths (alice's own files once unpacked: no owner is kept by a non-root tar). What goes
    into the container (`files/...`) keeps the modes it has there (folders 0755, files 0644: `podman cp` copies
    them onto the image's /etc and the like); the rest is alice's alone. Unpack with `tar -x -p`."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folders: set[str] = set()
        for path, data in sorted(files.items()):
            if path.startswith("/") or ".." in path.split("/"):
                raise BackendError(f"cannot place {path!r} on the cluster: a path without '..' is needed")
            inside = path.startswith("files/")
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                if folder not in folders:
                    folders.add(folder)
                    entry = tarfile.TarInfo(folder)
                    entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755 if inside else 0o700, now
                    archive.addfile(entry)
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644 if inside else 0o600, now
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def request_json(request: LaunchRequest) -> bytes:
    """The request as JSON, files left out (they are stored as files beside it)."""
    data = asdict(request)
    data.pop("files")
    data["env"], data["binds"], data["ulimits"] = dict(request.env), dict(request.binds), dict(request.ulimits)
    return json.dumps(data, indent=1, sort_keys=True).encode()


def request_from_json(text: str) -> LaunchRequest:
    data = json.loads(text)
    data["gpu_ids"] = tuple(data.get("gpu_ids") or ())
    data["ports"] = tuple(data.get("ports") or ())
    return LaunchRequest(**data)


def podman_exec(job: str, arguments: list[str]) -> str:
    """`podman exec ARGUMENTS` inside the job's allocation (an `srun --overlap` step), quoted for the shell."""
    return " ".join(
        _q(part) for part in ["srun", f"--jobid={job}", "--overlap", "--quiet", "podman", "exec", *arguments]
    )


def remove_tree(folder: str) -> str:
    """rm -rf, and where files made inside the container belong to subordinate ids, podman's user namespace."""
    return f"rm -rf {_q(folder)} 2>/dev/null || podman unshare rm -rf {_q(folder)}"


def label_values(text: str) -> tuple[str | None, str | None, str | None]:
    parts = [None if part == "-" else part for part in text.split()] + [None, None, None]
    return parts[0], parts[1], parts[2]


def folder_line(line: str) -> Folder | None:
    parts = line.split("|")
    if len(parts) != 4 or not parts[0]:
        return None
    owner, daemon, image_hash = label_values(parts[1])
    return Folder(parts[0], owner, daemon, image_hash, Ready.parse(parts[2]), parts[3].strip() or None)


def output_chunks(channel: Any) -> Iterator[tuple[str, bytes]]:
    """stdout and stderr of an exec channel as they arrive, until it closes."""
    try:
        while True:
            select.select([channel], [], [], 1.0)  # either stream, or the close, makes the channel readable
            moved = False
            while channel.recv_ready():
                moved = True
                yield "stdout", channel.recv(65536)
            while channel.recv_stderr_ready():
                moved = True
                yield "stderr", channel.recv_stderr(65536)
            if (
                not moved
                and channel.exit_status_ready()
                and not channel.recv_ready()
                and not channel.recv_stderr_ready()
                and (channel.eof_received or channel.closed)
            ):
                return
    finally:
        channel.close()
