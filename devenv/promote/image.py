"""The production image, assembled from the dev image's own layers: base, apt and Python packages
(the same layer digests, so a registry that has the dev image's layers receives only what is new),
then a layer that deletes the dev-only files below, then the project at one commit under /app.

Docker's builder stamps build times into the image config; assembling it here instead, with the
commit's time everywhere and tars devenv writes byte for byte, makes the same commit give the same
image id (and, pushed, the same digest), however often and wherever it is promoted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient
from devenv.errors import DevenvError
from devenv.promote.layers import whiteout_layer

# The first dev-only layer: `COPY --from=tooling /opt/devenv/ /opt/devenv/` (images/workspace/Dockerfile.j2,
# stage 2), which the classic builder records as "#(nop) COPY dir:... in /opt/devenv/ ".
TOOLING_DEST = "in /opt/devenv/"
# Dev-only files that lie in the layers kept (the base carries sshd for every workspace).
DEV_ONLY = ("/usr/sbin/sshd", "/etc/ssh", "/usr/lib/openssh", "/etc/profile.d/devenv.sh")


@dataclass(frozen=True)
class Assembled:
    tag: str
    image_id: str  # sha256:... of the config: the same for the same inputs
    kept_layers: int
    added_bytes: int  # what this image adds to the dev image's layers


def rfc3339(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _kept(history: list[dict[str, Any]]) -> tuple[int, int]:
    """(history entries, layers) before the first tooling instruction."""
    layers = 0
    for index, entry in enumerate(history):
        created_by = entry.get("created_by", "").rstrip()
        if "COPY" in created_by and (created_by.endswith(TOOLING_DEST) or "--from=tooling" in created_by):
            return index, layers
        if not entry.get("empty_layer"):
            layers += 1
    raise DevenvError(
        "the dev image has no devenv tooling layers to leave out",
        hint="rebuild it with this devenv (`devenv build`), then promote",
    )


def assemble(
    client: DockerClient,
    dev_tag: str,
    *,
    tag: str,
    created: int,
    entrypoint: list[str],
    labels: dict[str, str],
    strip: list[str],
    layers: list[tuple[str, bytes]],
) -> Assembled:
    """Load the production image as `tag`. `layers`: (what it is, layer tar) added after the strip layer."""
    with tempfile.TemporaryDirectory(prefix="devenv-promote-") as tmp:
        saved = Path(tmp) / "dev.tar"
        with engine_errors(f"exporting {dev_tag}"), saved.open("wb") as out:
            for chunk in client.images.get(dev_tag).save(named=False):
                out.write(chunk)
        with tarfile.open(saved) as dev:
            manifest = json.load(_member(dev, "manifest.json"))[0]
            config = json.load(_member(dev, manifest["Config"]))
            entries, keep = _kept(config.get("history") or [])
            # one fixed time for the strip layer: the same for every commit, so a registry has it after the first push
            added = [("devenv promote: remove dev-only files", whiteout_layer([*DEV_ONLY, *strip], mtime=0)), *layers]
            when = rfc3339(created)
            history = [
                {
                    "created": when,
                    "created_by": entry.get("created_by", ""),
                    **({"empty_layer": True} if entry.get("empty_layer") else {}),
                }
                for entry in config["history"][:entries]
            ]
            history += [{"created": when, "created_by": what} for what, _ in added]
            image_config = {
                "architecture": config.get("architecture", "amd64"),
                "os": config.get("os", "linux"),
                "created": when,
                "config": {
                    "Env": config["config"].get("Env") or [],
                    "Entrypoint": entrypoint,
                    "Cmd": None,
                    "WorkingDir": "/app",
                    "User": "dev",
                    "Labels": dict(sorted(labels.items())),
                },
                "history": history,
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [*config["rootfs"]["diff_ids"][:keep], *(_sha256(data) for _, data in added)],
                },
            }
            config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
            image_id = _sha256(config_bytes)
            archive = Path(tmp) / "prod.tar"
            with tarfile.open(archive, "w") as out:
                names = []
                for path in manifest["Layers"][:keep]:
                    member = dev.getmember(path)
                    out.addfile(member, dev.extractfile(member))
                    names.append(path)
                for index, (_, data) in enumerate(added):
                    name = f"devenv-{index}/layer.tar"
                    out.addfile(_file(name, len(data)), io.BytesIO(data))
                    names.append(name)
                config_name = f"{image_id.split(':', 1)[1]}.json"
                out.addfile(_file(config_name, len(config_bytes)), io.BytesIO(config_bytes))
                listing = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": names}]).encode()
                out.addfile(_file("manifest.json", len(listing)), io.BytesIO(listing))
        with engine_errors(f"loading {tag}"), archive.open("rb") as handle:
            client.images.load(handle)
    loaded = client.images.get(tag)
    if loaded.id != image_id:
        raise DevenvError(f"the engine loaded {tag} as {loaded.id}, not the assembled {image_id}")
    return Assembled(tag, image_id, keep, sum(len(data) for _, data in added))


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = archive.extractfile(name)
    if handle is None:
        raise DevenvError(f"the exported image has no {name}")
    return handle


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info
