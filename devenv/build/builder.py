"""Building a dev image from a plan through the Docker SDK, with networking off.

The context holds everything the Dockerfile installs (debs, wheels, tooling), fetched and
verified on the host first; the build runs with `network_mode="none"`, so nothing inside it can
reach out. (`project.build_project` answers an unchanged plan with a tag lookup instead.) The image
built is then normalised (devenv.build.reproducible): the same lock gives the same image ID.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from devenv.build.fetch import Artifact, fetch_all
from devenv.build.plan import BuildPlan
from devenv.build.reproduce import reproduce_image
from devenv.build.tooling import tooling_files
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import APIError, DockerClient, ImageNotFound
from devenv.errors import BaseImageMissing, BuildError, LockError
from devenv.lock.python import platform_ranking
from devenv.lock.sdists import ensure_built, epoch, is_built
from devenv.progress import Progress, emit
from devenv.resources import cache_dir

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_MADE = re.compile(r"^ ---> ([0-9a-f]{12})$")


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    cached: bool
    seconds: float
    steps_run: int = 0
    steps_cached: int = 0
    cached_instructions: tuple[str, ...] = ()
    made: tuple[str, ...] = ()  # the images (short IDs) the classic builder committed for each step
    normalise_seconds: float = 0.0


def find_image(client: DockerClient, tag: str) -> str | None:
    try:
        return client.images.get(tag).id
    except ImageNotFound:
        return None


def check_base(client: DockerClient, plan: BuildPlan) -> None:
    base = plan.lock.base
    found = find_image(client, base.image)
    if found is None:
        raise BaseImageMissing(
            f"the locked base image {base.image} is not on this engine",
            hint="run `devenv images bootstrap` (or `devenv lock` to re-pin the base)",
        )
    if found != base.digest:
        raise BaseImageMissing(
            f"the base image {base.image} on this engine is {found}, but devenv.lock pins {base.digest}",
            hint="a base bootstrapped from other package versions differs (the lock's base.packages lists "
            "its versions): run `devenv lock` to re-pin it here",
        )


def assemble_context(plan: BuildPlan, directory: Path, progress: Progress | None) -> None:
    """Write the Dockerfile and hard-link every verified artifact into `directory`."""
    cache = cache_dir()
    (directory / "Dockerfile").write_text(plan.dockerfile)
    lock = plan.lock
    debs = [Artifact(p.filename, p.url, p.sha256) for p in lock.apt]
    _build_from_sources(plan, progress)
    wheels = [Artifact(p.wheel.filename, p.wheel.url, p.wheel.sha256) for p in lock.python]
    tooling = [Artifact(p.wheel.filename, p.wheel.url, p.wheel.sha256) for p in lock.tooling]
    if debs:
        _place(fetch_all(debs, cache / "debs", progress, what="apt packages"), directory / "debs")
    _place(fetch_all(wheels, cache / "wheels", progress, what="Python wheels"), directory / "python" / "wheels")
    (directory / "python" / "requirements.txt").write_text(plan.python_requirements)
    tooling_dir = directory / "tooling"
    if plan.tooling_requirements:
        _place(fetch_all(tooling, cache / "wheels", progress, what="tooling wheels"), tooling_dir / "wheels")
    tooling_dir.mkdir(parents=True, exist_ok=True)
    (tooling_dir / "requirements.txt").write_text(plan.tooling_requirements)
    for name, source in tooling_files().items():
        shutil.copy2(source, tooling_dir / name)


def _build_from_sources(plan: BuildPlan, progress: Progress | None) -> None:
    """Wheels the lock built from sdists are in the cache where it was locked; elsewhere, build them again."""
    lock = plan.lock
    from_source = [p for p in lock.python if p.sdist is not None and not is_built(p)]
    if not from_source:
        return
    arch, _, manylinux = lock.inputs.platform.partition("-manylinux_")
    glibc = manylinux.replace("_", ".")
    ranking = platform_ranking(lock.inputs.python, arch, glibc)
    for package in from_source:
        emit(progress, "phase", f"building {package.name} {package.version} from its source (it publishes no wheel)")
        try:
            ensure_built(
                package,
                python=lock.inputs.python,
                ranking=ranking,
                glibc=glibc,
                resolved_at=lock.inputs.requirements_snapshot(lock.resolved_at),
            )
        except LockError as exc:
            raise BuildError(exc.message, hint=exc.hint) from exc


def _place(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = folder / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def build_image(
    client: DockerClient,
    plan: BuildPlan,
    progress: Progress | None = None,
    *,
    no_cache: bool = False,
    tag: str | None = None,
    step_cache: bool = True,
) -> BuildResult:
    """Build the plan's image as `tag` (the plan's by default), then normalise it so that the same
    lock gives the same image ID (the tag lookup that skips an unchanged build is the caller's). With
    `step_cache`, the builder's own image becomes the image name's step cache; a throwaway build (verify's)
    leaves the step cache as it was."""
    started = time.perf_counter()
    target = tag or plan.tag
    check_base(client, plan)
    with tempfile.TemporaryDirectory(prefix="devenv-context-", dir=cache_dir()) as tmp:
        context = Path(tmp)
        assemble_context(plan, context, progress)
        emit(progress, "phase", f"building {target} (network off)")
        built, steps, cached, made = _run_build(client, plan, context, progress, no_cache=no_cache, tag=target)
    emit(progress, "phase", "normalising the layers (the same lock gives the same image)")
    base_layers = client.images.get(plan.lock.base.digest).attrs["RootFS"]["Layers"]
    # the builder's own image stays as the step cache: the next build of the same steps is this image again,
    # whose normalised layers reproduce_image remembers
    normal = reproduce_image(
        client, built, tag=target, epoch=epoch(plan.lock.resolved_at), keep=len(base_layers), labels=plan.labels
    )
    if step_cache:
        keep_step_cache(client, built, target)
    return BuildResult(
        target,
        normal.image_id,
        cached=False,
        seconds=time.perf_counter() - started,
        steps_run=len(steps) - len(cached),
        steps_cached=len(cached),
        cached_instructions=tuple(cached),
        made=tuple(made),
        normalise_seconds=normal.seconds,
    )


STEP_CACHE_TAG = "steps"


def keep_step_cache(client: DockerClient, built: str, target: str) -> None:
    """Tag the builder's own image REPO:steps, the one step cache of this image name, and remove the one it
    replaces: a cache per build would keep a full copy of every image ever built (9 GB for a torch image),
    untagged. Parents the new one shares stay; an old one another name still tags stays too."""
    repository = target.rsplit(":", 1)[0]
    cache_tag = f"{repository}:{STEP_CACHE_TAG}"
    try:
        old = client.images.get(cache_tag).id
    except ImageNotFound:
        old = None
    with engine_errors(f"keeping the step cache of {repository}"):
        client.images.get(built).tag(repository, STEP_CACHE_TAG)
    if old is not None and old != built:
        with contextlib.suppress(APIError):  # tagged elsewhere, or a container uses it: it stays
            client.images.remove(old, noprune=False)


CONTEXT_MTIME = 315532800  # 1980-01-01, as wheels do: files copied into the image get a fixed time
# SOURCE_DATE_EPOCH inside the build. Its presence is what matters (pip and py_compile write hash-checked .pyc
# files); its value is a constant, not the lock's resolved_at: the classic builder puts build arguments in each
# RUN step's cache key, and a value that moved with every re-lock rebuilt the apt and tooling steps (JupyterLab
# reinstalled) after a one-package change. The times in the finished layers are clamped to resolved_at afterwards.
BUILD_EPOCH = CONTEXT_MTIME


def context_archive(directory: Path, out: BinaryIO) -> None:
    """The build context as a tar with sorted entries, fixed owners and times, and no hard links.

    The engine's COPY cache key hashes the tar entries; the SDK's own archiver turns a file that is
    hard-linked twice (a wheel shared by the project and the tooling) into a link entry, so the
    tooling stage's key would change whenever the project's packages do. Here every file is a
    plain entry, and the same files always give the same archive.
    """
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory).as_posix()
            info = tarfile.TarInfo(relative)
            info.mtime, info.uid, info.gid, info.uname, info.gname = CONTEXT_MTIME, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size = path.stat().st_size
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as content:
                    archive.addfile(info, content)
    out.seek(0)


def _run_build(
    client: DockerClient, plan: BuildPlan, context: Path, progress: Progress | None, *, no_cache: bool, tag: str
) -> tuple[str, list[str], list[str], list[str]]:
    """Stream the build; returns the image ID, every step's instruction, those served from cache, and
    the images the steps made."""
    tail: list[str] = []
    steps: list[str] = []
    cached: list[str] = []
    made: list[str] = []
    image_id: str | None = None
    with tempfile.TemporaryFile(dir=cache_dir()) as archive, engine_errors(f"building {tag}"):
        context_archive(context, archive)
        stream = client.api.build(
            fileobj=archive,
            custom_context=True,
            tag=tag,
            network_mode="none",
            rm=True,
            forcerm=True,
            nocache=no_cache,
            decode=True,
            pull=False,
            buildargs={"SOURCE_DATE_EPOCH": str(BUILD_EPOCH)},
        )
        for chunk in stream:
            if "error" in chunk:
                detail = "\n".join(tail[-25:])
                raise BuildError(
                    f"building {tag} failed: {chunk['error'].strip()}\n{detail}",
                    hint="the step's output is above; fix the spec (setup, apt, requirements)",
                )
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            line = chunk.get("stream", "").rstrip()
            if not line:
                continue
            step = _STEP.match(line)
            if committed := _MADE.match(line):
                made.append(committed.group(1))
            if step:
                emit(progress, "step", step.group(3), current=int(step.group(1)), total=int(step.group(2)))
                steps.append(step.group(3))
            elif "Using cache" in line and steps:
                cached.append(steps[-1])
            else:
                tail.append(line)
                emit(progress, "log", line)
    if image_id is None:
        image_id = client.images.get(tag).attrs["Id"]  # `.id` is typed optional; an image has one
    return image_id, steps, cached, made
