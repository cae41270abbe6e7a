"""Layer tars and image configs made byte for byte the same for the same inputs.

Docker's classic builder stamps each build: files a RUN step writes carry the time it ran, the
layer tars name owners by user and group name, and the image config records when each step ran
and which container made it. Run through `normalise_layer`, a layer has sorted entries, every time
set to one epoch (the lock's `resolved_at`), numeric owners only, and none of the files that
only record when the build ran (`VOLATILE`); `normal_config` fixes the config's times and drops
its traces of the build's containers. The promote path writes its own layers with `tar_entry`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import io
import json
import platform
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, cast

from devenv.build.layer_view import LowerView
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient, ImageNotFound
from devenv.errors import DevenvError
from devenv.resources import cache_dir

# Files a build writes that record when (or in which container) it ran, never what it installed:
# dpkg's and apt's logs, the `-old` copies dpkg and debconf keep of their own databases, ldconfig's
# auxiliary cache (inode numbers and times; ldconfig rebuilds it), pip's version check. Patterns
# match whole paths inside the layer (no leading slash); a match drops the entry and what lies under it.
VOLATILE = (
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/apt/*",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dpkg/*-old",
    "var/cache/debconf/*-old",
    "root/.cache",
    "home/*/.cache",
    "tmp/*",
)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tar_entry(
    name: str,
    *,
    mtime: int,
    mode: int,
    kind: bytes = tarfile.REGTYPE,
    size: int = 0,
    uid: int = 0,
    gid: int = 0,
    linkname: str = "",
) -> tarfile.TarInfo:
    """One tar header as devenv writes them: the given time, numeric owners, no user or group names."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, mtime, size, linkname
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    return info


def is_volatile(name: str, patterns: Iterable[str] = VOLATILE) -> bool:
    """Whether `name` (a path inside a layer) or one of its parents matches a pattern."""
    parts = name.strip("/").split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(prefix, pattern) for pattern in patterns for prefix in prefixes)


class _Digesting:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _target(members: dict[str, tarfile.TarInfo], name: str) -> str:
    """The name whose entry carries the data of the hard link `name` (links to links followed)."""
    seen = {name}
    target = members[name].linkname.strip("/")
    while target in members and members[target].islnk() and target not in seen:
        seen.add(target)
        target = members[target].linkname.strip("/")
    return target


def _hardlinks(members: dict[str, tarfile.TarInfo]) -> dict[str, tuple[str, tarfile.TarInfo]]:
    """Each name of a hard-linked file -> (the first of its names in sorted order, which carries the data
    from then on; the entry that carries it in the layer). Links whose data lies outside the layer are left be."""
    groups: dict[str, set[str]] = {}
    for name, member in members.items():
        if member.islnk():
            target = _target(members, name)
            if target in members and not members[target].islnk():
                groups.setdefault(target, {target}).add(name)
    found: dict[str, tuple[str, tarfile.TarInfo]] = {}
    for target, names in groups.items():
        root = min(names)
        for name in names:
            found[name] = (root, members[target])
    return found


def normalise_layer(
    source: Path | IO[bytes] | tarfile.TarFile,
    out: IO[bytes],
    *,
    epoch: int,
    volatile: Iterable[str] = VOLATILE,
    below: LowerView | None = None,
) -> tuple[str, int]:
    """Write `source` (a layer tar: a path, a seekable file, or an open tar) to `out` normalised; returns
    (diff_id, size). With `below` (what the layers under it give), entries that only repeat it are left out,
    and the layer is then added to `below`.

    Entries sorted by name; every time set to `epoch`, earlier ones too (a step served from the cache ran
    when an earlier lock was built, before this lock's `epoch`: a clamp would keep those times); numeric
    owners kept, user and group names and access/change times dropped (extended attributes kept);
    a hard-linked file's data under the first of its names; entries matching `volatile` left out.
    Headers are read first (the tar is seekable), then each file is streamed: nothing is held in memory.
    """
    patterns = tuple(volatile)
    archive = source if isinstance(source, tarfile.TarFile) else _open_tar(source)
    try:
        every = archive.getmembers()
        members: dict[str, tarfile.TarInfo] = {}
        for member in every:
            name = member.name.strip("/")
            if name and name != "." and not is_volatile(name, patterns):
                members[name] = member  # a name written twice: the last one is what extracting leaves
        links = _hardlinks(members)
        if below is not None:
            kept = {
                name: member
                for name, member in members.items()
                if name in links or not below.repeats(name, archive, member)
            }
            # a folder stays when something under it stays: extracted into an empty layer folder, a file
            # whose parent has no entry gets one made by root, which would hide the folder's owner below
            parents = {name.rsplit("/", depth)[0] for name in kept for depth in range(1, name.count("/") + 1)}
            members = {name: member for name, member in members.items() if name in kept or name in parents}
        digesting = _Digesting(out)
        with tarfile.open(
            fileobj=cast(IO[bytes], digesting),
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
        ) as written:
            for name in sorted(members):
                data = members[name]
                if name in links:
                    root, data = links[name]
                    if name != root:
                        written.addfile(_header(data, name, epoch, link_to=root))
                        continue
                written.addfile(_header(data, name, epoch), archive.extractfile(data) if data.isreg() else None)
        if below is not None:
            below.add_layer(archive, every)
    finally:
        if archive is not source:
            archive.close()
    return "sha256:" + digesting.digest.hexdigest(), digesting.size


def _open_tar(source: Path | IO[bytes]) -> tarfile.TarFile:
    if isinstance(source, Path):
        return tarfile.open(source, mode="r:")
    return tarfile.open(fileobj=source, mode="r:")


def _header(member: tarfile.TarInfo, name: str, epoch: int, *, link_to: str | None = None) -> tarfile.TarInfo:
    kind, size, linkname = member.type, member.size, member.linkname
    if link_to is not None:
        kind, size, linkname = tarfile.LNKTYPE, 0, link_to
    elif member.isreg():
        kind = tarfile.REGTYPE  # AREGTYPE and CONTTYPE are regular files too
    else:
        size = 0
    info = tar_entry(
        name, mtime=epoch, mode=member.mode, kind=kind, size=size, uid=member.uid, gid=member.gid, linkname=linkname
    )
    info.devmajor, info.devminor = member.devmajor, member.devminor
    info.pax_headers = {
        key: member.pax_headers[key] for key in sorted(member.pax_headers) if key.startswith("SCHILY.xattr.")
    }
    return info


def normal_config(
    config: dict[str, Any], *, epoch: int, diff_ids: list[str], labels: dict[str, str] | None = None
) -> bytes:
    """The image config with `diff_ids`, created at `epoch` (every history entry too), `labels` added to its
    own, and without the build's containers (`container`, `container_config`, the parent image in
    `config.Image`)."""
    when = rfc3339(epoch)
    result = {key: value for key, value in config.items() if key not in ("container", "container_config", "parent")}
    result["created"] = when
    result["config"] = {**(config.get("config") or {}), "Image": ""}
    if labels:
        result["config"]["Labels"] = {**(result["config"].get("Labels") or {}), **labels}
    result["history"] = [{**entry, "created": when} for entry in config.get("history") or []]
    result["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    return json.dumps(result, sort_keys=True, separators=(",", ":")).encode()


def layer_files(archive: tarfile.TarFile) -> dict[str, str]:
    """What a layer holds, name -> a short description (kind, size, mode, owner, SHA256 of the data):
    two layers with the same descriptions extract to the same files."""
    found: dict[str, str] = {}
    for member in archive:
        name = member.name.strip("/")
        if member.isreg():
            digest = hashlib.sha256()
            handle = archive.extractfile(member)
            while handle is not None and (chunk := handle.read(1 << 20)):
                digest.update(chunk)
            what = f"file {member.size} B sha256:{digest.hexdigest()[:16]}"
        elif member.issym() or member.islnk():
            what = f"{'symlink' if member.issym() else 'hardlink'} -> {member.linkname}"
        else:
            what = "dir" if member.isdir() else f"type {member.type.decode()}"
        xattrs = sorted(key for key in member.pax_headers if key.startswith("SCHILY.xattr."))
        found[name] = f"{what} mode {member.mode:o} owner {member.uid}:{member.gid} mtime {int(member.mtime)}" + (
            f" xattrs {','.join(xattrs)}" if xattrs else ""
        )
    return found


def saved_image(client: DockerClient, image: str, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`docker save` of `image` streamed into `path`; returns its (manifest entry, config)."""
    with engine_errors(f"exporting {image}"), path.open("wb") as out:
        for chunk in client.images.get(image).save(chunk_size=1 << 20, named=False):
            out.write(chunk)
    with tarfile.open(path) as archive:
        manifest = json.load(_member(archive, "manifest.json"))[0]
        config = json.load(_member(archive, manifest["Config"]))
    return manifest, config


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = archive.extractfile(name)
    if handle is None:
        raise DevenvError(f"the exported image has no {name}")
    return handle


def load_root_image(
    client: DockerClient, layer: Path, *, tag: str, epoch: int, config: dict[str, Any], created_by: str
) -> str:
    """Load, as `tag`, a one-layer image of the root file system tar `layer`, created at `epoch`, with `config`
    (Env, Cmd, Labels) and nothing else: the same tar and config give the same image ID. Returns the ID."""
    digest = hashlib.sha256()
    with layer.open("rb") as content:
        for chunk in iter(lambda: content.read(1 << 20), b""):
            digest.update(chunk)
    when = rfc3339(epoch)
    image_config = {
        "architecture": _GOARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": when,
        "config": config,
        "history": [{"created": when, "created_by": created_by}],
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest.hexdigest()]},
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    image_id = sha256_digest(config_bytes)
    config_name = f"{image_id.split(':', 1)[1]}.json"
    listing = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["0/layer.tar"]}]).encode()
    with tempfile.TemporaryFile(dir=cache_dir()) as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            with layer.open("rb") as content:
                archive.addfile(layer_file("0/layer.tar", layer.stat().st_size), content)
            for name, data in ((config_name, config_bytes), ("manifest.json", listing)):
                archive.addfile(layer_file(name, len(data)), io.BytesIO(data))
        out.seek(0)
        with engine_errors(f"loading {tag}"):
            client.images.load(out)
    found = image_id_of(client, tag)
    if found != image_id:
        raise DevenvError(f"the engine holds {tag} as {found}, not the loaded {image_id}")
    return image_id


_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # an image config names the architecture as Go does


def layer_file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info


def image_id_of(client: DockerClient, name: str) -> str | None:
    try:
        return str(client.images.get(name).attrs["Id"])
    except ImageNotFound:
        return None
