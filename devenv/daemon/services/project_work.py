"""`devenv lock`, `build`, `verify`, `run`, `ci run`, `promote` and `images` done by the daemon, the one owner
of the engines: the project a person uploaded (devenv.yaml, devenv.lock, the requirement files; its folder or
a commit's archive through PUT /v1/code) locked, built, proved, run or promoted on a backend's engine, as `up`
does, so a command on a laptop and a workspace on a GPU host resolve and build the same way."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from devenv.backends.base import ExecStream, ImageBuilder, Promoter, RunFiles
from devenv.build.base import available_recipes
from devenv.build.builder import BuildResult
from devenv.build.project import Project
from devenv.build.verify import Verified
from devenv.ci.workflow import require_test
from devenv.code.changes import changed_files
from devenv.code.manifest import human_size, max_code_bytes
from devenv.code.store import CodeStore
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.projects import Projects, Upload
from devenv.errors import Unsupported, UsageError
from devenv.lock.lockfile import read_lock
from devenv.lock.models import LOCK_FILENAME, BaseImage
from devenv.progress import Progress, emit
from devenv.promote.package import CommitFacts, Promotion, check_promotable

CI_FOLDER = "/home/dev/project"  # where `devenv ci run` runs the tests: the project folder, uploaded
_CHUNK = 1 << 20
GIVEN_BACK_FACTOR = 4  # a CI run's folder is read back up to this many times the daemon's code limit


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
    def __init__(self, projects: Projects, backends: Backends, code: CodeStore | None = None) -> None:
        self.projects = projects
        self.backends = backends
        self.code = code

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

    def check_ci(self, upload: Upload, on: str | None, code: str, person: str, *, admin: bool) -> None:
        """A CI run needs the spec's `ci.test`, a lock, and code this person uploaded."""
        self.check(upload, on, locked=True)
        require_test(self.projects.open(upload).spec, upload.spec_path)
        self._code().require(code, person, admin=admin)

    def ci(self, upload: Upload, on: str | None, code: str, *, progress: Progress | None) -> ExecStream:
        """`ci.test` through `bash -c` as dev in a throwaway container of the upload's image (built first when
        it is not there), in the uploaded project folder, with CI=true and the spec's env. After the output,
        "changed" chunks: a tar of the files the tests created or changed there (code/changes.py)."""
        project = self.projects.open(upload)
        command = require_test(project.spec, upload.spec_path)
        store = self._code()
        built = self.build(upload, on, no_cache=False, progress=progress)
        builder, _ = self._builder(project, on)
        emit(progress, "phase", f"running `{command}` in {built.result.tag}")
        stream = builder.run(
            built.result.tag,
            ["bash", "-c", command],
            env={"CI": "true", **project.spec.env},
            files=RunFiles(store.tar(code), CI_FOLDER),
        )
        before = store.manifest(code).entries

        def chunks() -> Iterator[tuple[str, bytes]]:
            limit = GIVEN_BACK_FACTOR * max_code_bytes()
            with tempfile.TemporaryFile(prefix="devenv-ci-given-") as given:
                kept = 0
                for which, chunk in stream:
                    if which != "files":
                        yield which, chunk
                    elif kept <= limit:  # past it, the rest is read and dropped: the daemon's disk is not the tests'
                        kept += len(chunk)
                        given.write(chunk)
                if kept > limit:
                    emit(progress, "log", f"nothing given back: the project folder grew past {human_size(limit)}")
                    return
                given.seek(0)
                with tempfile.TemporaryFile(prefix="devenv-ci-changed-") as changed:
                    found = changed_files(given, CI_FOLDER.rsplit("/", 1)[-1], before, changed, max_code_bytes())
                    if found.left_out:
                        shown = ", ".join(found.left_out[:5]) + (" ..." if len(found.left_out) > 5 else "")
                        emit(progress, "log", f"not given back ({len(found.left_out)}): {shown}")
                    if found.files:
                        emit(progress, "log", f"giving back {len(found.files)} files ({human_size(found.bytes)})")
                        changed.seek(0)
                        while part := changed.read(_CHUNK):
                            yield "changed", part

        return ExecStream(chunks(), lambda: stream.exit_code if stream.exit_code is not None else 1, stream.stop)

    def check_promote(self, upload: Upload, on: str | None, code: str, person: str, *, admin: bool) -> None:
        """A promotion needs the spec's `promote:`, a lock, a backend that promotes, and code this person
        uploaded."""
        self.check(upload, on, locked=True)
        project = self.projects.open(upload)
        check_promotable(project)
        self._promoter(project, on)
        self._code().require(code, person, admin=admin)

    def promote(
        self,
        upload: Upload,
        on: str | None,
        code: str,
        facts: CommitFacts,
        *,
        tag: str | None,
        push: bool,
        auth: dict[str, str] | None,
        progress: Progress | None,
    ) -> Promotion:
        """`devenv promote` on the engine of `on` (default: the spec's backend): `code` is the commit's git
        archive the person uploaded; `auth` their registry login, used for this push only, never kept."""
        project = self.projects.open(upload)
        self.projects.plan(upload)
        promoter = self._promoter(project, on)
        return promoter.promote(
            project, facts, self._code().tar(code), tag=tag, push=push, auth=auth, progress=progress
        )

    def _promoter(self, project: Project, on: str | None) -> Promoter:
        builder, name = self._builder(project, on)
        if not isinstance(builder, Promoter):
            raise Unsupported(
                f"backend {name} does not promote images", hint="`--on` a backend with a Docker engine (`local`)"
            )
        return builder

    def _code(self) -> CodeStore:
        if self.code is None:
            raise Unsupported("this daemon keeps no uploaded code")
        return self.code

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
