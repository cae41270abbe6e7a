"""Shipping an image from this machine's engine to a remote one (`docker save | docker load`, streamed).

A remote host builds the workspace image itself, but the lock pins its base by image id, and a base
bootstrapped elsewhere matches it only from the very same Debian package versions: so the very base the
lock names is sent from the engine beside the daemon, once per host, keeping its id. The stream goes
through the same SSH connection as every other engine call, with progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from devenv.engine.sdk import DockerException, ImageNotFound
from devenv.errors import BaseImageMissing, BuildError
from devenv.progress import Progress, emit


def _image_id(client: Any, tag: str) -> str | None:
    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        return None


def ship_image(
    source: Any, target: Any, tag: str, digest: str, *, where: str, progress: Progress | None = None
) -> None:
    """Make `tag` (with id `digest`) exist on `target`, copying it from `source`; nothing when it is there."""
    if _image_id(target, tag) == digest:
        return
    try:
        local = _image_id(source, tag)
    except DockerException as exc:
        local = None
        reason = f"this machine's engine does not answer ({exc})"
    else:
        reason = f"this machine's engine has {local}" if local else "this machine's engine does not have it either"
    if local != digest:
        raise BaseImageMissing(
            f"the locked base image {tag} ({digest[:19]}) is not on {where}, and {reason}",
            hint="run `devenv images bootstrap` beside the daemon (it is then shipped), or "
            "`devenv lock` on that host to pin its own base",
        )
    size = int(source.images.get(tag).attrs.get("Size") or 0)
    emit(progress, "phase", f"shipping base image {tag} ({size / 1e6:.0f} MB unpacked) to {where}")
    for answer in target.api.load_image(_counted(source.api.get_image(tag), progress, tag)):
        if isinstance(answer, dict) and answer.get("error"):
            raise BuildError(f"loading {tag} on {where} failed: {answer['error']}")
    if _image_id(target, tag) != digest:
        raise BuildError(
            f"{tag} arrived on {where} with another id than {digest[:19]}",
            hint="the engines may store images differently (containerd image store); run `devenv lock` on that host",
        )
    emit(progress, "done", f"base image {tag} is on {where}")


def _counted(chunks: Iterable[bytes], progress: Progress | None, tag: str) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        emit(progress, "download", f"shipping {tag}", current=sent)
        yield chunk
