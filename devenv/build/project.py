"""A project's way from devenv.yaml to an image: ensure the base, lock, check, plan, build.

This is the one place that knows the order of those steps; the CLI (and later the daemon) call
these functions and render their progress and errors.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from devenv.build.base import Recipe, ensure_base, load_recipe
from devenv.build.builder import BuildResult, build_image, find_image
from devenv.build.plan import BuildPlan, plan_build
from devenv.build.tooling import KERNEL_REQUIREMENTS, TOOLING_REQUIREMENTS, versioning_apt, versioning_python
from devenv.confinement import PathOutside, resolve_inside
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient
from devenv.errors import LockError, LockMissing
from devenv.lock.apt import RESOLVE_SCRIPT, parse_resolution
from devenv.lock.lockfile import check_lock, read_lock, write_lock
from devenv.lock.models import LOCK_FILENAME, AptPackage, BaseImage, Lock, LockInputs, PythonPackage
from devenv.lock.native import host_packages
from devenv.lock.python import resolve_python
from devenv.lock.sdists import wheel_path
from devenv.progress import Progress, emit
from devenv.spec import Spec, load_spec

_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class Project:
    spec_path: Path
    spec: Spec

    @property
    def directory(self) -> Path:
        return self.spec_path.parent

    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_FILENAME

    @property
    def recipe(self) -> Recipe:
        return load_recipe(self.spec.base)


def open_project(spec_path: Path) -> Project:
    return Project(spec_path=spec_path.resolve(), spec=load_spec(spec_path))


def project_file(project: Project, name: str) -> Path:
    """A file the spec names, inside the project folder (symlinks resolved); LockError when it leads out."""
    try:
        return resolve_inside(project.directory, name)
    except PathOutside:
        raise LockError(
            f"{name}: a requirements file must be inside the project folder",
            hint="copy the file into the project folder",
        ) from None


def machine_arch(client: DockerClient | None = None) -> str:
    """The CPU architecture images are locked for: the engine's when known, else this machine's."""
    raw = platform.machine()
    if client is not None:
        with engine_errors("reading engine info"):
            raw = client.info().get("Architecture", raw)
    return _ARCH_ALIASES.get(raw, raw)


def lock_inputs(project: Project, arch: str) -> LockInputs:
    """What the spec asks the lock to satisfy; pure file work, no network."""
    spec, recipe = project.spec, project.recipe
    if spec.python != recipe.python:
        raise LockError(
            f"python: the spec asks for {spec.python}, but the {recipe.name} base provides Python {recipe.python}",
            hint=f'set `python: "{recipe.python}"` in devenv.yaml, or pick another base',
        )
    requirements = {
        name: hashlib.sha256(project_file(project, name).read_bytes()).hexdigest() for name in spec.requirements
    }
    return LockInputs(
        base=spec.base,
        python=spec.python,
        platform=f"{arch}-manylinux_{recipe.glibc.replace('.', '_')}",
        apt=sorted({*spec.apt, *versioning_apt(spec)}),
        requirements=requirements,
        extra_python=(list(KERNEL_REQUIREMENTS) if spec.jupyter else []) + versioning_python(spec),
        tooling=list(TOOLING_REQUIREMENTS) if spec.jupyter else [],
        requirements_as_of=spec.requirements_as_of,
        old_pins=spec.old_pins,
    )


def resolve_apt(
    client: DockerClient, base: BaseImage, packages: list[str], progress: Progress | None
) -> list[AptPackage]:
    if not packages:
        return []
    emit(progress, "phase", f"resolving apt packages in {base.image}: {' '.join(packages)}")
    with engine_errors("resolving apt packages"):
        container = client.containers.run(
            base.image,
            ["sh", "-c", RESOLVE_SCRIPT, "sh", *packages],
            detach=True,
        )
        try:
            status = container.wait()
            output = container.logs(stdout=True, stderr=False).decode()
            errors = container.logs(stdout=False, stderr=True).decode()
        finally:
            container.remove(force=True)
    if status.get("StatusCode") != 0:
        raise LockError(
            f"apt could not resolve {' '.join(packages)}:\n{errors.strip()[-1500:]}",
            hint="check the package names under apt: (`apt-cache search NAME` on Debian)",
        )
    return parse_resolution(output)


def lock_project(
    client: DockerClient, project: Project, progress: Progress | None = None, *, upgrade: bool = False
) -> tuple[Lock, bool]:
    """Resolve every pin and write devenv.lock; returns the lock and whether the file changed.

    Re-locking unchanged inputs reuses the previous lock's index snapshot time, so it yields the
    same bytes; `upgrade` takes a fresh snapshot (newest versions allowed by the requirements).
    """
    arch = machine_arch(client)
    inputs = lock_inputs(project, arch)
    try:
        previous: Lock | None = read_lock(project.lock_path)
    except LockMissing:  # none yet, or unreadable: resolve afresh and replace it
        previous = None
    if previous is not None and not upgrade:
        resolved_at = previous.resolved_at
    else:
        resolved_at = dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = ensure_base(client, project.recipe, progress)
    requirement_files = [project_file(project, name) for name in project.spec.requirements]
    if inputs.requirements_as_of:
        emit(
            progress,
            "phase",
            f"resolving Python requirements as PyPI stood on {inputs.requirements_as_of} (requirements_as_of)",
        )
    else:
        emit(progress, "phase", "resolving Python requirements")
    moved: dict[str, str] | None = {} if inputs.old_pins == "move" else None
    python = resolve_python(
        requirement_files,
        inputs.extra_python,
        python=inputs.python,
        arch=arch,
        glibc=project.recipe.glibc,
        exclude_newer=inputs.requirements_snapshot(resolved_at),
        root=project.directory,
        as_of=inputs.requirements_as_of,
        moved=moved,
    )
    for name, move in (moved or {}).items():
        emit(
            progress,
            "phase",
            f"old pin moved: {name} {move} (no wheel for Python {inputs.python} before; old_pins: move)",
        )
    apt = resolve_apt(client, base, sorted({*inputs.apt, *_native_packages(python, progress)}), progress)
    tooling = []
    if inputs.tooling:
        emit(progress, "phase", "resolving devenv tooling (JupyterLab)")
        tooling = resolve_python(
            [], inputs.tooling, python=inputs.python, arch=arch, glibc=project.recipe.glibc, exclude_newer=resolved_at
        )
    lock = Lock(
        resolved_at=resolved_at, inputs=inputs, base=base, apt=apt, python=python, tooling=tooling, moved=moved or None
    )
    changed = previous is None or previous != lock
    write_lock(lock, project.lock_path)
    return lock, changed


def _native_packages(python: list[PythonPackage], progress: Progress | None) -> set[str]:
    """Debian packages holding the system libraries that wheels built here from sdists link to (lock.native)."""
    packages: set[str] = set()
    for package in python:
        if package.sdist is None:
            continue
        for library, owner in host_packages(package.name, wheel_path(package)).items():
            emit(
                progress,
                "phase",
                f"{package.name} (built from its source) links to {library}: adding the Debian package {owner}",
            )
            packages.add(owner)
    return packages


def checked_lock(project: Project, arch: str | None = None) -> Lock:
    """The project's lock, after making sure it still matches the spec (LockMismatch if not)."""
    lock = read_lock(project.lock_path)
    check_lock(lock_inputs(project, arch or lock.inputs.platform.split("-", 1)[0]), lock, project.lock_path)
    return lock


def _git_provenance(directory: Path) -> tuple[str | None, str | None]:
    """(source URL, commit) of the project's git checkout, if it is one."""
    import git  # GitPython is slow to import; only a real build needs provenance

    try:
        repo = git.Repo(directory, search_parent_directories=True)
        revision = repo.head.commit.hexsha
        source = next((remote.url for remote in repo.remotes if remote.name == "origin"), None)
    except (ValueError, git.exc.GitError):
        return None, None
    return source, revision


def project_plan(project: Project, lock: Lock, *, provenance: bool = True) -> BuildPlan:
    """The build plan; `provenance` adds the git source/revision labels (not part of the image hash)."""
    source, revision = _git_provenance(project.directory) if provenance else (None, None)
    if project.spec.repo is not None:
        source = project.spec.repo.url
    return plan_build(
        project.spec.name,
        lock,
        setup=project.spec.setup,
        jupyter=project.spec.jupyter,
        source=source,
        revision=revision,
    )


def build_project(
    client: DockerClient,
    project: Project,
    progress: Progress | None = None,
    *,
    no_cache: bool = False,
    arch: str | None = None,
) -> BuildResult:
    """Build the project's image; when its tag exists already this is a tag lookup and nothing more.

    `arch` is the engine's architecture when the caller knows it already (it saves an info call).
    """
    started = time.perf_counter()
    lock = checked_lock(project, arch or machine_arch(client))
    plan = project_plan(project, lock, provenance=False)
    existing = None if no_cache else find_image(client, plan.tag)
    if existing is not None:
        emit(progress, "done", f"{plan.tag} is up to date (nothing to build)")
        return BuildResult(plan.tag, existing, cached=True, seconds=time.perf_counter() - started)
    result = build_image(client, project_plan(project, lock), progress, no_cache=no_cache)
    emit(progress, "done", f"built {result.tag} in {result.seconds:.1f}s")
    return result
