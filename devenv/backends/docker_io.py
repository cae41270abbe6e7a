"""What goes to and comes from a Docker engine in its own formats: list and inspect answers read
into Observed, and files packed as the tar archives the engine unpacks into a container."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from typing import Any, cast

from devenv.backends.base import (
    LABEL_DAEMON,
    LABEL_GPU_IDS,
    LABEL_IMAGE_HASH,
    LABEL_OWNER,
    LABEL_WORKSPACE,
    ContainerStatus,
    Observed,
)
from devenv.backends.isolation import network_name
from devenv.errors import BackendError


def address_of(info: Mapping[str, Any]) -> str | None:
    """The container's address on its workspace's own network (a list row and an inspect both carry it),
    else on its first: a container made before workspaces had networks sits on the default bridge, and
    another network joined by hand must not be the one the daemon and tunnels use."""
    labels = info.get("Labels") or (info.get("Config") or {}).get("Labels") or {}
    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
    own = networks.get(network_name(labels.get(LABEL_WORKSPACE, ""))) or {}
    if own.get("IPAddress"):
        return str(own["IPAddress"])
    return next((net.get("IPAddress") for net in networks.values() if net.get("IPAddress")), None)


def staged_name(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.devenv-new"


def tar_of(files: Mapping[str, bytes], *, mode: int = 0o644, uid: int = 0) -> bytes:
    """A tar of files at absolute paths, stored relative to / (the engine makes missing folders, 0755)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in sorted(files.items()):
            if not path.startswith("/") or ".." in path.split("/") or "'" in path:
                raise BackendError(f"cannot place {path!r}: an absolute path without '..' or quotes is needed")
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _status(raw: str | None) -> ContainerStatus:
    return cast(ContainerStatus, raw or "dead")


def observed_from_list(row: Mapping[str, Any], *, exposed: bool = False) -> Observed:
    """`exposed`: list unpublished ports too (a remote engine's, reached by tunnel), as port 0."""
    labels = row.get("Labels") or {}
    names = row.get("Names") or [""]
    ports = {
        int(p["PrivatePort"]): int(p.get("PublicPort") or 0)
        for p in row.get("Ports") or []
        if p.get("Type") == "tcp" and (p.get("PublicPort") or exposed)
    }
    return Observed(
        workspace=labels.get(LABEL_WORKSPACE, ""),
        container_id=row["Id"],
        container_name=names[0].lstrip("/"),
        status=_status(row.get("State")),
        owner=labels.get(LABEL_OWNER),
        image_hash=labels.get(LABEL_IMAGE_HASH),
        ports=ports,
        detail=row.get("Status") or "",
        daemon=labels.get(LABEL_DAEMON),
        gpu_ids=_gpu_ids(labels),
        image_id=row.get("ImageID") or None,
    )


def observed_from_inspect(info: Mapping[str, Any], *, exposed: bool = False) -> Observed:
    labels = (info.get("Config") or {}).get("Labels") or {}
    state = info.get("State") or {}
    ports: dict[int, int] = {}
    for key, bound in ((info.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        if proto == "tcp" and (bound or exposed):
            ports[int(port)] = int(bound[0]["HostPort"]) if bound else 0
    status = _status(state.get("Status"))
    detail = f"Exited ({state.get('ExitCode')})" if status == "exited" else status.capitalize()
    return Observed(
        workspace=labels.get(LABEL_WORKSPACE, ""),
        container_id=info["Id"],
        container_name=str(info.get("Name", "")).lstrip("/"),
        status=status,
        owner=labels.get(LABEL_OWNER),
        image_hash=labels.get(LABEL_IMAGE_HASH),
        ports=ports,
        detail=detail,
        daemon=labels.get(LABEL_DAEMON),
        gpu_ids=_gpu_ids(labels),
        image_id=info.get("Image") or None,
    )


def _gpu_ids(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(part for part in (labels.get(LABEL_GPU_IDS) or "").split(",") if part)
