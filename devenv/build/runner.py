"""Running one command in a built image, as the `dev` user: its output as it comes, then its exit code.

This is the one-shot path (`devenv run`, through the daemon) that proves an image works; long-lived
workspaces with home volumes, sshd and JupyterLab are the daemon's job.
"""

from __future__ import annotations

import posixpath
import sys
import tarfile
import tempfile
from collections.abc import Generator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from devenv.engine.errors import engine_errors
from devenv.engine.sdk import APIError, DockerClient

ONE_SHOT_LABEL = "devenv.one-shot"
DEV_UID = 1000  # `dev` in every base (images/*/Dockerfile, devenv/build/bootstrap.py)


def one_shot(
    client: DockerClient,
    image: str,
    command: list[str],
    *,
    network: bool = True,
    host_config: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    name: str | None = None,
    environment: Mapping[str, str] | None = None,
    files: tuple[Path, str] | None = None,
) -> Generator[tuple[str, bytes] | int, None, None]:
    """Run `command` in a fresh container of `image`: ("stdout"|"stderr", bytes) chunks as they come, then
    the exit code (an int) last. The container is removed when the command ends, and when the reader stops
    early (the generator closed: a client gone, Ctrl-C): a command nobody reads does not run on.

    `files` (a tar, a folder): the tar's members placed into the folder, owned by dev, before the start; the
    command runs there, and once it ends the folder's tar comes back as ("files", bytes) chunks (as the engine
    gives it: members under the folder's own name), before the exit code."""
    action = f"running a command in {image}"
    workdir = files[1] if files is not None else "/home/dev"
    with engine_errors(action):
        container = client.containers.create(
            image,
            command,
            name=name,
            user="dev",
            working_dir=workdir,
            environment=dict(environment or {}),
            network_mode=None if network else "none",
            labels={ONE_SHOT_LABEL: "true", **(labels or {})},
            **dict(host_config or {}),
        )
    try:
        with engine_errors(action):
            if files is not None:
                _place(container, *files)
            # attached before it starts, as `docker run` does: an attach made after a quick command has exited
            # could wait for output that never comes (seen once: `exit 3` hung 15 minutes on a busy engine)
            output = container.attach(stream=True, logs=True, demux=True)
            container.start()
            for stdout, stderr in output:
                if stdout:
                    yield "stdout", stdout
                if stderr:
                    yield "stderr", stderr
            code = int(container.wait().get("StatusCode", 1))
            if files is not None:
                archive, _stat = container.get_archive(workdir)
                for chunk in archive:
                    yield "files", chunk
        yield code
    finally:
        with suppress(APIError):
            container.remove(force=True)


def _place(container: Any, tar: Path, folder: str) -> None:
    """`tar`'s members put into `folder` (made, dev's), through the engine's API: a remote engine works alike."""
    parent, base = posixpath.split(folder.rstrip("/"))
    with tempfile.TemporaryFile(prefix="devenv-run-files-") as placed:
        with tarfile.open(fileobj=placed, mode="w", format=tarfile.PAX_FORMAT) as out:
            top = tarfile.TarInfo(base)
            top.type, top.mode = tarfile.DIRTYPE, 0o755
            _as_dev(top)
            out.addfile(top)
            with tarfile.open(tar, mode="r|") as source:  # checked on arrival (devenv/code/manifest.py: scan)
                for member in source:
                    member.name = f"{base}/{member.name}"
                    _as_dev(member)
                    out.addfile(member, source.extractfile(member) if member.isfile() else None)
        placed.seek(0)
        container.put_archive(parent or "/", placed)


def _as_dev(member: tarfile.TarInfo) -> None:
    member.uid = member.gid = DEV_UID
    member.uname = member.gname = "dev"


def run_once(
    client: DockerClient,
    image: str,
    command: list[str],
    *,
    network: bool = True,
    out: BinaryIO | None = None,
    err: BinaryIO | None = None,
) -> int:
    """`one_shot` written to `out` and `err` (this process's by default); its exit code."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    code = 1
    for item in one_shot(client, image, command, network=network):
        if isinstance(item, int):
            code = item
        else:
            stream = out if item[0] == "stdout" else err
            stream.write(item[1])
            stream.flush()
    return code
