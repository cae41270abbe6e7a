"""The fake backend's images: built, proved, run once and promoted in memory (ImageBuilder and Promoter), and
the lock and base a fake engine pins. A half of FakeBackend of its own, as DockerImages is of DockerBackend."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.backends.base import ExecStream, RunFiles
from devenv.errors import BackendError
from devenv.progress import emit

if TYPE_CHECKING:
    from devenv.build.base import Recipe
    from devenv.build.builder import BuildResult
    from devenv.build.project import Project
    from devenv.build.verify import Verified
    from devenv.lock.models import BaseImage
    from devenv.progress import Progress
    from devenv.promote.package import CommitFacts, Promotion

FAKE_ARCH = "x86_64"


class FakeImages:
    if TYPE_CHECKING:  # what FakeBackend provides
        url: str
        exec_handler: Callable[[str, list[str]], tuple[int, bytes, bytes] | None] | None
        calls: Counter[str]
        _lock: threading.RLock

        def _enter(self, method: str) -> None: ...

    def __init__(self, images: Iterable[str] | None) -> None:
        self.images: set[str] | None = None if images is None else set(images)
        self.locked: list[Project] = []
        self.runs: list[tuple[str, list[str], bool]] = []  # (image, argv, network) of each `run`
        self.run_envs: list[dict[str, str]] = []  # and its env
        self.run_writes: dict[str, bytes] = {}  # files a run with `files` writes into its folder
        self.promotions: list[
            tuple[CommitFacts, bytes, str | None, dict[str, str] | None]
        ] = []  # facts, code, tag, auth
        self.bases: set[str] = set()  # the base recipes made (`base(make=True)`)

    def build(self, project: Project, progress: Progress | None = None, *, no_cache: bool = False) -> BuildResult:
        """The tag a real build would make (from the project's plan), recorded without any engine."""
        from devenv.build.builder import BuildResult
        from devenv.build.project import checked_lock, project_plan

        with self._lock:
            self._enter("build")
        plan = project_plan(project, checked_lock(project, FAKE_ARCH), provenance=False)
        with self._lock:
            if self.images is None:
                self.images = set()
            cached = plan.tag in self.images and not no_cache
            self.images.add(plan.tag)
        return BuildResult(plan.tag, f"sha256:{plan.image_hash}", cached=cached, seconds=0.0)

    def verify(self, project: Project, progress: Progress | None = None) -> Verified:
        """The image a build made, proved by a second build that gives the same tag (nothing is rebuilt)."""
        from devenv.build.verify import Verified

        with self._lock:
            self._enter("verify")
        again = self.build(project, progress, no_cache=True)
        return Verified(again.tag, again.image_id, 0.0, 0.0)

    def base(
        self, recipe: str, *, make: bool, force: bool = False, progress: Progress | None = None
    ) -> BaseImage | None:
        """The fake base `write_fake_lock` pins, there once made (`make`)."""
        from devenv.build.base import load_recipe

        with self._lock:
            self._enter("base")
            if make:
                self.bases.add(recipe)
            if recipe not in self.bases:
                return None
        return fake_base(load_recipe(recipe))

    def run(
        self,
        image: str,
        argv: list[str],
        *,
        network: bool = True,
        env: Mapping[str, str] | None = None,
        files: RunFiles | None = None,
    ) -> ExecStream:
        """`exec_handler(image, argv)`'s answer (exit code, stdout, stderr), or argv echoed; the image must have
        been built (`build`). With `files`, the folder given back is what was placed with `run_writes` written
        over it, under the folder's name as an engine gives it."""
        with self._lock:
            self._enter("run")
            if image not in (self.images or set()):
                raise BackendError(f"running a command in {image} on {self.url}: the image is not on this engine")
            self.runs.append((image, list(argv), network))
            self.run_envs.append(dict(env or {}))
            result = self.exec_handler(image, list(argv)) if self.exec_handler else None
        code, out, err = result if result is not None else (0, " ".join(argv).encode() + b"\n", b"")
        chunks = [(name, data) for name, data in (("stdout", out), ("stderr", err)) if data]
        if files is not None:
            given = _under(files.tar, files.folder.rstrip("/").rsplit("/", 1)[-1], self.run_writes)
            chunks.append(("files", given))
        return ExecStream(iter(chunks), lambda: code)

    def promote(
        self,
        project: Project,
        facts: CommitFacts,
        code: Path,
        *,
        tag: str | None = None,
        push: bool = False,
        auth: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Promotion:
        """A promotion of the built image that loads and pushes nothing: the facts, code and login it was
        given are kept (`promotions`) for tests to read."""
        from devenv.promote.package import Promotion, check_promotable
        from devenv.promote.push import Pushed

        check_promotable(project)
        built = self.build(project, progress)
        with self._lock:
            self._enter("promote")
            self.promotions.append((facts, code.read_bytes(), tag, auth))
        emit(progress, "phase", f"assembling the production image at {facts.commit[:12]} (fake)")
        target = tag or f"devenv/{project.spec.name}-prod:{facts.commit[:12]}"
        digest = "sha256:" + hashlib.sha256(f"{built.image_id}{facts.commit}".encode()).hexdigest()
        pushed = Pushed(f"{target.rsplit(':', 1)[0]}@{digest}", digest, 1, 0, 1) if push else None
        gate = "passed" if project.spec.ci is not None else "no `ci.test` in the spec: promoted without a gate"
        return Promotion(
            target,
            digest,
            facts.commit,
            facts.dirty,
            "1970-01-01T00:00:00Z",
            {},
            b"{}",
            gate,
            0,
            pushed,
            list(facts.notes),
        )

    def lock(self, project: Project, progress: Progress | None = None, *, upgrade: bool = False) -> bool:
        """Write a devenv.lock that matches the spec, pinning no packages (nothing is resolved)."""
        with self._lock:
            self._enter("lock")
            self.locked.append(project)
        emit(progress, "phase", "resolving (fake: nothing is resolved)")
        before = project.lock_path.read_bytes() if project.lock_path.exists() else None
        write_fake_lock(project)
        return project.lock_path.read_bytes() != before


def _under(tar: Path, folder: str, writes: Mapping[str, bytes]) -> bytes:
    """`tar`'s members and `writes` under `folder/`, as Docker's get_archive of that folder gives them."""
    given = io.BytesIO()
    with tarfile.open(tar, mode="r|") as source, tarfile.open(fileobj=given, mode="w") as out:
        top = tarfile.TarInfo(folder)
        top.type = tarfile.DIRTYPE
        out.addfile(top)
        for member in source:
            if member.name in writes:
                continue
            member.name = f"{folder}/{member.name}"
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        for path, data in writes.items():
            written = tarfile.TarInfo(f"{folder}/{path}")
            written.size, written.mode = len(data), 0o644
            out.addfile(written, io.BytesIO(data))
    return given.getvalue()


def write_fake_lock(project: Project) -> None:
    """A lock that `checked_lock` accepts for `project`, with a made-up base and no packages."""
    from devenv.build.project import lock_inputs
    from devenv.lock.lockfile import write_lock
    from devenv.lock.models import Lock

    inputs = lock_inputs(project, FAKE_ARCH)
    base = fake_base(project.recipe)
    lock = Lock(resolved_at="2024-01-01T00:00:00Z", inputs=inputs, base=base, apt=[], python=[], tooling=[])
    write_lock(lock, project.lock_path)


def fake_base(recipe: Recipe) -> BaseImage:
    """The base a fake lock pins for `recipe`: a made-up digest, the recipe's Python."""
    from devenv.lock.models import BaseImage

    digest = hashlib.sha256(f"fake-base-{recipe.name}".encode()).hexdigest()
    return BaseImage(
        recipe=recipe.name,
        image=f"devenv/base:{recipe.name}-fake",
        digest=f"sha256:{digest}",
        source="bootstrap",
        upstream="fake",
        python=recipe.python,
    )
