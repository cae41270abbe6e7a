"""`devenv lock`, `build`, `verify`, `run` and `images` done by the daemon, the one owner of the engines: the
project a person uploaded (devenv.yaml, devenv.lock, the requirement files) locked, built, proved or run on a
backend's engine, as `up` does, so a command on a laptop and a workspace on a GPU host resolve and build the
same way."""

from __future__ import annotations

from dataclasses import dataclass

from devenv.backends.base import ExecStream, ImageBuilder
from devenv.build.base import available_recipes
from devenv.build.builder import BuildResult
from devenv.build.project import Project
from devenv.build.verify import Verified
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.projects import Projects, Upload
from devenv.errors import Unsupported, UsageError
from devenv.lock.lockfile import read_lock
from devenv.lock.models import LOCK_FILENAME, BaseImage
from devenv.progress import Progress


@dataclass(frozen=True)
class Locked:
    lock: str  # devenv.lock's text
    changed: bool
    python: int
    apt: int
    tooling: int


@dataclass(frozen=True)
class Built:
    result: BuildResult
    backend: str


class ProjectWork:
    def __init__(self, projects: Projects, backends: Backends) -> None:
        self.projects = projects
        self.backends = backends

    def check(self, upload: Upload, on: str | None, *, locked: bool) -> None:
        """What the work would refuse, refused now (before a stream begins, so it is a 4xx): the spec and files
        (SpecInvalid with the person's lines), the backend, and for a build the lock (missing, or stale)."""
        self._builder(self.projects.open(upload), on)
        if locked:
            self.projects.plan(upload)

    def lock(self, upload: Upload, on: str | None, *, upgrade: bool, progress: Progress | None) -> Locked:
        """Resolve the upload's devenv.lock on the engine of `on` (default: the spec's backend); the lock it
        sent, if any, keeps its index snapshot unless `upgrade`."""
        project = self.projects.open(upload)  # SpecInvalid with the person's file and lines, before any engine
        builder, _ = self._builder(project, on)
        counts: list[int] = []
        changed = False

        def resolve(copy: Project) -> None:
            nonlocal changed
            changed = builder.lock(copy, progress, upgrade=upgrade)
            written = read_lock(copy.lock_path)
            counts.extend((len(written.python), len(written.apt), len(written.tooling)))

        locked = self.projects.resolve_lock(upload, resolve)
        return Locked(locked.files[LOCK_FILENAME], changed, *counts)

    def build(self, upload: Upload, on: str | None, *, no_cache: bool, progress: Progress | None) -> Built:
        """Build the upload's image on the engine of `on` (default: the spec's backend): a tag lookup when
        it is there; LockMissing or LockMismatch, naming the person's devenv.lock, before any engine."""
        project = self.projects.open(upload)
        self.projects.plan(upload)
        builder, name = self._builder(project, on)
        return Built(builder.build(project, progress, no_cache=no_cache), name)

    def check_verifiable(self, upload: Upload, on: str | None) -> None:
        """A verify needs the lock the image was built from (named as the person knows it)."""
        self.check(upload, on, locked=False)
        if not upload.has_lock:
            raise UsageError(
                f"no {LOCK_FILENAME} beside {upload.spec_path}: nothing to verify",
                hint="run `devenv lock` and `devenv build` first",
            )

    def verify(self, upload: Upload, on: str | None, *, progress: Progress | None) -> Verified:
        """The upload's image rebuilt with no cache on the engine of `on`, and proved the image in use."""
        project = self.projects.open(upload)
        builder, _ = self._builder(project, on)
        return builder.verify(project, progress)

    def base(
        self, recipe: str, on: str | None, *, make: bool, force: bool, progress: Progress | None
    ) -> BaseImage | None:
        """A base image on the engine of `on` (default: local), made first with `make`."""
        return self._named(on or "local").base(recipe, make=make, force=force, progress=progress)

    def recipes(self) -> list[str]:
        return available_recipes()

    def run(
        self, upload: Upload, on: str | None, argv: list[str], *, network: bool, progress: Progress | None
    ) -> ExecStream:
        """`argv` once in a throwaway container of the upload's image (built first when it is not there),
        on the engine of `on`; the stream's `stop` ends it when its reader goes away."""
        if not argv or not all(isinstance(word, str) and word for word in argv):
            raise UsageError("`devenv run` needs a command: devenv run -- CMD [ARGS]...")
        built = self.build(upload, on, no_cache=False, progress=progress)
        builder, _ = self._builder(self.projects.open(upload), on)
        return builder.run(built.result.tag, argv, network=network)

    def _builder(self, project: Project, on: str | None) -> tuple[ImageBuilder, str]:
        """The backend asked for; `auto` (which places a workspace by free GPUs) builds on `local`."""
        name = on or project.spec.backend
        name = "local" if name == "auto" else name
        return self._named(name), name

    def _named(self, name: str) -> ImageBuilder:
        backend = self.backends.get(name)
        if not isinstance(backend, ImageBuilder):
            raise Unsupported(
                f"backend {name} does not build images", hint="`--on` a backend with a Docker engine (`local`)"
            )
        return backend
