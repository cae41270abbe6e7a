"""`devenv verify`: rebuild a project's image from its lock, with no cache, and compare it with the image in use.

Builds are normalised (devenv.build.reproducible), so the same lock gives the same image ID: a match proves
the image in use is what the lock says, and is recorded (`verified_at`). A mismatch names the first layer
that differs and the files that differ in it. The rebuilt image and every image its build made are removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.build.builder import build_image, find_image
from devenv.build.plan import BuildPlan, plan_build
from devenv.build.project import Project, checked_lock, machine_arch
from devenv.build.reproducible import layer_files, saved_image
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import APIError, DockerClient
from devenv.errors import UsageError, VerifyMismatch
from devenv.progress import Progress, emit
from devenv.resources import cache_dir

SOURCE_LABEL = "org.opencontainers.image.source"
REVISION_LABEL = "org.opencontainers.image.revision"
SHOWN_FILES = 20  # files listed for the first differing layer; the rest are counted


@dataclass(frozen=True)
class Verified:
    tag: str
    image_id: str
    build_seconds: float
    seconds: float


def _marker(image_id: str) -> Path:
    return cache_dir() / "verified" / image_id.removeprefix("sha256:")


def verified_at(image_id: str) -> str | None:
    """When `devenv verify` last proved this image is what its lock builds (an ISO-8601 UTC time), or None."""
    try:
        return str(json.loads(_marker(image_id).read_text())["verified_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_verified(image_id: str, lock_hash: str) -> None:
    """Write down that `devenv verify` proved `image_id` (read by verified_at, shown by `devenv status`)."""
    path = _marker(image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(json.dumps({"image_id": image_id, "verified_at": when, "lock_hash": lock_hash}) + "\n")


def in_use(client: DockerClient, project: Project) -> tuple[BuildPlan, str]:
    """The plan that rebuilds the image the project's lock names (with the provenance labels it was built
    with), and that image's ID; UsageError when there is no lock or no image yet."""
    if not project.lock_path.exists():
        raise UsageError(
            f"no {project.lock_path.name} in {project.directory}: nothing to verify",
            hint="run `devenv lock` and `devenv build` first",
        )
    lock = checked_lock(project, machine_arch(client))
    spec = project.spec
    plan = plan_build(spec.name, lock, setup=spec.setup, jupyter=spec.jupyter)
    image_id = find_image(client, plan.tag)
    if image_id is None:
        raise UsageError(
            f"{plan.tag}, the image {project.lock_path.name} gives, is not on this engine: nothing to verify",
            hint="run `devenv build` first",
        )
    labels = client.images.get(image_id).labels or {}
    plan = plan_build(
        spec.name,
        lock,
        setup=spec.setup,
        jupyter=spec.jupyter,
        source=labels.get(SOURCE_LABEL),
        revision=labels.get(REVISION_LABEL),
    )
    return plan, image_id


def verify_project(client: DockerClient, project: Project, progress: Progress | None = None) -> Verified:
    """Rebuild the project's image with no cache under a temporary tag and compare; VerifyMismatch if it differs."""
    started = time.perf_counter()
    plan, current = in_use(client, project)
    temporary = f"devenv/{plan.name}:verify-{secrets.token_hex(6)}"
    with engine_errors("listing images"):
        before = {image_id.removeprefix("sha256:")[:12] for image_id in client.api.images(all=True, quiet=True)}
    made: tuple[str, ...] = ()
    try:
        emit(progress, "phase", f"rebuilding {plan.tag} from {project.lock_path.name} with no cache")
        result = build_image(client, plan, progress, no_cache=True, tag=temporary, step_cache=False)
        made = result.made
        if result.image_id != current:
            emit(progress, "phase", "comparing the rebuilt image with the image in use")
            raise VerifyMismatch(
                f"{plan.tag} is {current}, but {project.lock_path.name} rebuilds {result.image_id}\n"
                + describe_difference(client, plan.tag, temporary),
                hint="the image in use was changed after its build, or the build is not reproducible: "
                "`devenv build --no-cache` replaces it with what the lock gives",
                data={"image_id": current, "rebuilt": result.image_id},
            )
    finally:
        _remove(client, temporary, [image for image in made if image not in before])
    record_verified(current, plan.lock.content_hash())
    emit(progress, "done", f"{plan.tag} is {current}: the lock rebuilds it exactly")
    return Verified(plan.tag, current, result.seconds, time.perf_counter() - started)


def _remove(client: DockerClient, tag: str, made: list[str]) -> None:
    """The rebuilt image's tag, then the images its build committed (newest first), where nothing else uses them."""
    for image in [tag, *reversed(made)]:
        with contextlib.suppress(APIError):
            client.images.remove(image)


def describe_difference(client: DockerClient, current: str, rebuilt: str) -> str:
    """Where two images part: the first layer whose diff_id differs, with its files added, removed or
    changed (kind, size, mode, owner, SHA256); or, with the same layers, the config fields that differ."""
    with tempfile.TemporaryDirectory(prefix="devenv-verify-", dir=cache_dir()) as tmp:
        ours_manifest, ours = saved_image(client, current, Path(tmp) / "current.tar")
        theirs_manifest, theirs = saved_image(client, rebuilt, Path(tmp) / "rebuilt.tar")
        ours_ids, theirs_ids = ours["rootfs"]["diff_ids"], theirs["rootfs"]["diff_ids"]
        index = next(
            (i for i, (a, b) in enumerate(zip(ours_ids, theirs_ids, strict=False)) if a != b),
            min(len(ours_ids), len(theirs_ids)),
        )
        if index == len(ours_ids) == len(theirs_ids):
            return "the layers are the same; the image config differs in: " + ", ".join(_config_keys(ours, theirs))
        lines = [f"first differing layer: {index} (in use {_at(ours_ids, index)}, rebuilt {_at(theirs_ids, index)})"]
        with tarfile.open(Path(tmp) / "current.tar") as a, tarfile.open(Path(tmp) / "rebuilt.tar") as b:
            used = _files(a, ours_manifest, index)
            built = _files(b, theirs_manifest, index)
    # told from the image in use: what it added to, removed from or changed in what the lock builds
    changes = [f"  added {name}: {used[name]}" for name in sorted(used.keys() - built.keys())]
    changes += [f"  removed {name}: {built[name]}" for name in sorted(built.keys() - used.keys())]
    changes += [
        f"  changed {name}: {built[name]} -> {used[name]}"
        for name in sorted(used.keys() & built.keys())
        if used[name] != built[name]
    ]
    changes.sort(key=lambda line: line.split(" ", 4)[3])
    lines.append(f"files that differ in it, the image in use against the rebuild: {len(changes)}")
    lines += changes[:SHOWN_FILES]
    if len(changes) > SHOWN_FILES:
        lines.append(f"  ... and {len(changes) - SHOWN_FILES} more")
    return "\n".join(lines)


def _at(diff_ids: list[str], index: int) -> str:
    return diff_ids[index] if index < len(diff_ids) else "none"


def _files(archive: tarfile.TarFile, manifest: dict[str, Any], index: int) -> dict[str, str]:
    if index >= len(manifest["Layers"]):
        return {}
    handle = archive.extractfile(manifest["Layers"][index])
    if handle is None:
        return {}
    with tarfile.open(fileobj=handle, mode="r:") as layer:
        return layer_files(layer)


def _config_keys(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    keys = []
    for key in sorted(ours.keys() | theirs.keys()):
        if key == "config":
            inner_a, inner_b = ours.get("config") or {}, theirs.get("config") or {}
            keys += [f"config.{k}" for k in sorted(inner_a.keys() | inner_b.keys()) if inner_a.get(k) != inner_b.get(k)]
        elif ours.get(key) != theirs.get(key):
            keys.append(key)
    return keys
