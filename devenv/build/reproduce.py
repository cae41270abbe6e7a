"""The image a build made, replaced by its normalised form: the same inputs give the same image ID.

Normalising reads every layer above the base (`docker save`), rewrites it (`normalise_layer`) and loads the
result: about 20 s for an image with JupyterLab on a slow storage driver. Most builds need none of it: a
project that differs from one built before only in its name, source or revision gets the very same image
from the builder (those are labels, set in the normalised config, never a build step), so the layers are
the ones normalised before. A memo (`<cache>/normalised/<built image>-<epoch>.json`: the built image's
config, the normalised layers' IDs and an image that holds them) turns such a build into a config written
and loaded with the layers the engine already has, in well under a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devenv.build.layer_view import LowerView
from devenv.build.reproducible import (
    image_id_of,
    layer_file,
    normal_config,
    normalise_layer,
    saved_image,
    sha256_digest,
)
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient, ImageNotFound
from devenv.errors import DevenvError
from devenv.resources import cache_dir


@dataclass(frozen=True)
class Reproduced:
    image_id: str  # sha256 of the normalised config
    diff_ids: tuple[str, ...]
    loaded: bool  # False when the engine had this image already (the same inputs built before)
    seconds: float
    remembered: bool = False  # the layers were normalised before (the memo): nothing read or rewritten


def reproduce_image(
    client: DockerClient, built: str, *, tag: str, epoch: int, keep: int, labels: dict[str, str] | None = None
) -> Reproduced:
    """Replace the image `built` (an ID) under `tag` by its normalised form: the first `keep` layers
    (the base's) as they are, every later one through `normalise_layer`, the config through `normal_config`
    with `labels`. The engine then names it by the SHA256 of that config: the same inputs give the same
    image ID, whether its layers were normalised now or remembered from an earlier build."""
    started = time.perf_counter()
    memo = _memo_path(built, epoch)
    remembered = _remembered(client, memo, built, keep)
    with tempfile.TemporaryDirectory(prefix="devenv-reproduce-", dir=cache_dir()) as tmp:
        folder = Path(tmp)
        archive = folder / "normal.tar"  # what `docker load` reads, written as the layers are normalised
        with archive.open("w+b") as out:
            if remembered is not None:
                raw, diff_ids = remembered["config"].encode(), list(remembered["diff_ids"])
                names = [f"{index}/layer.tar" for index in range(len(diff_ids))]
                for name in names:  # the engine holds every layer: `docker load` reads none of these
                    out.write(layer_file(name, 0).tobuf(tarfile.USTAR_FORMAT))
            else:
                raw, diff_ids, names = _normalise_layers(client, built, folder, out, epoch=epoch, keep=keep)
            config_bytes = normal_config(json.loads(raw), epoch=epoch, diff_ids=diff_ids, labels=labels)
            image_id = sha256_digest(config_bytes)
            existing = image_id_of(client, image_id)
            if existing is None:
                config_name = f"{image_id.split(':', 1)[1]}.json"
                listing = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": names}]).encode()
                for name, data in ((config_name, config_bytes), ("manifest.json", listing)):
                    out.write(layer_file(name, len(data)).tobuf(tarfile.USTAR_FORMAT))
                    out.write(data + bytes(-len(data) % tarfile.BLOCKSIZE))
                out.write(bytes(2 * tarfile.BLOCKSIZE))  # the end of the archive
                out.seek(0)
                with engine_errors(f"loading {tag}"):
                    client.images.load(out)
    if existing is not None:
        with engine_errors(f"tagging {tag}"):
            repository, _, version = tag.rpartition(":")
            client.api.tag(image_id, repository, version)
    found = image_id_of(client, tag)
    if found != image_id:
        raise DevenvError(f"the engine holds {tag} as {found}, not the normalised {image_id}")
    if remembered is None:
        _remember(memo, raw, diff_ids, image_id)
    return Reproduced(
        image_id,
        tuple(diff_ids),
        loaded=existing is None,
        seconds=time.perf_counter() - started,
        remembered=remembered is not None,
    )


def _normalise_layers(
    client: DockerClient, built: str, folder: Path, out: IO[bytes], *, epoch: int, keep: int
) -> tuple[bytes, list[str], list[str]]:
    """Write every layer of `built` to `out` as `docker load` reads it (the base's as empty stand-ins, the rest
    normalised); returns the built image's config (its bytes), the normalised layers' IDs and the layers'
    names."""
    manifest, config = saved_image(client, built, folder / "built.tar")
    diff_ids = list(config["rootfs"]["diff_ids"])[:keep]
    names = [f"{index}/layer.tar" for index in range(len(manifest["Layers"]))]
    with tarfile.open(folder / "built.tar") as saved, contextlib.ExitStack() as open_:
        raw = _member(saved, manifest["Config"]).read()
        below = LowerView()  # read from every layer's tar, kept open: a file's content is hashed when needed
        layers = [
            open_.enter_context(tarfile.open(fileobj=_member(saved, path), mode="r:")) for path in manifest["Layers"]
        ]
        for index, layer in enumerate(layers):
            if index < keep:
                below.add_layer(layer, layer.getmembers())
                # the engine has the base's layers (the image just built lies on them), and `docker load`
                # reads a layer's file only for a layer it lacks: an empty file stands in
                out.write(layer_file(names[index], 0).tobuf(tarfile.USTAR_FORMAT))
                continue
            header = out.tell()
            out.write(bytes(tarfile.BLOCKSIZE))  # the header, once the size is known
            diff_id, size = normalise_layer(layer, out, epoch=epoch, below=below)
            out.write(bytes(-size % tarfile.BLOCKSIZE))
            end = out.tell()
            out.seek(header)
            out.write(layer_file(names[index], size).tobuf(tarfile.USTAR_FORMAT))
            out.seek(end)
            diff_ids.append(diff_id)
    return raw, diff_ids, names


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = archive.extractfile(name)
    if handle is None:
        raise DevenvError(f"the exported image has no {name}")
    return handle


def _memo_path(built: str, epoch: int) -> Path:
    return cache_dir() / "normalised" / f"{built.removeprefix('sha256:')}-{epoch}.json"


def _remembered(client: DockerClient, memo: Path, built: str, keep: int) -> dict[str, Any] | None:
    """The memo of an earlier normalisation of the same built image, checked: its config is the one whose
    SHA256 is the built image's ID, its base layers are the built image's, and the engine still holds an image
    with exactly its normalised layers (a remote engine, or one pruned since, falls back to normalising)."""
    try:
        remembered: dict[str, Any] = json.loads(memo.read_text())
        config, diff_ids = str(remembered["config"]), list(remembered["diff_ids"])
        holder = client.images.get(str(remembered["image"])).attrs["RootFS"]["Layers"]
        layers = client.images.get(built).attrs["RootFS"]["Layers"]
    except (OSError, ValueError, KeyError, TypeError, ImageNotFound):
        return None
    trusted = (
        sha256_digest(config.encode()) == built
        and holder == diff_ids
        and len(layers) == len(diff_ids)
        and layers[:keep] == diff_ids[:keep]
    )
    return remembered if trusted else None


def _remember(memo: Path, config: bytes, diff_ids: list[str], image_id: str) -> None:
    with contextlib.suppress(OSError):  # a memo not written costs the next build its normalising, nothing else
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial = memo.with_name(f"{memo.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"config": config.decode(), "diff_ids": diff_ids, "image": image_id}))
        partial.replace(memo)
