"""The docker backend's images: built, proved, run once and promoted on the engine it reaches (ImageBuilder and
Promoter). A half of DockerBackend of its own because it owns another thing: images, not workspaces."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.backends.base import LABEL_BACKEND, ExecStream, RunFiles
from devenv.backends.isolation import security_settings
from devenv.engine.sdk import APIError, DockerClient

if TYPE_CHECKING:
    from devenv.build.builder import BuildResult
    from devenv.build.project import Project
    from devenv.build.verify import Verified
    from devenv.lock.models import BaseImage
    from devenv.progress import Progress
    from devenv.promote.package import CommitFacts, Promotion

API_VERSION = "1.41"  # pinned: the SDK would otherwise ask the engine for its version on construction


class DockerImages:
    if TYPE_CHECKING:  # what DockerBackend provides
        name: str
        url: str
        timeout: int
        _arch: str | None

        @property
        def client(self) -> DockerClient: ...

        @property
        def remote(self) -> bool: ...

        def _engine(self, action: str, *, ports: tuple[int, ...] = ()) -> AbstractContextManager[None]: ...

    def arch(self) -> str:
        """The engine's CPU architecture, asked once: an engine does not change it."""
        if self._arch is None:
            from devenv.build.project import machine_arch

            self._arch = machine_arch(self.client)
        return self._arch

    def build(self, project: Project, progress: Progress | None = None, *, no_cache: bool = False) -> BuildResult:
        """Build on this engine (a tag lookup when it exists). A remote host gets the locked base first,
        shipped from the engine beside the daemon when it lacks it."""
        from devenv.build.project import build_project

        if self.remote:
            self._ensure_base(project, progress)
        return build_project(self.client, project, progress, no_cache=no_cache, arch=self.arch())  # its own errors

    def _ensure_base(self, project: Project, progress: Progress | None) -> None:
        from devenv.backends.ship import ship_image
        from devenv.build.project import checked_lock

        base = checked_lock(project, self.arch()).base
        with (
            self._engine(f"shipping the base image to {self.name}"),
            closing(DockerClient.from_env(version=API_VERSION, timeout=self.timeout)) as here,
        ):
            ship_image(here, self.client, base.image, base.digest, where=f"{self.name} ({self.url})", progress=progress)

    def verify(self, project: Project, progress: Progress | None = None) -> Verified:
        from devenv.build.verify import verify_project

        return verify_project(self.client, project, progress)

    def base(
        self, recipe: str, *, make: bool, force: bool = False, progress: Progress | None = None
    ) -> BaseImage | None:
        from devenv.build.base import ensure_base, find_base, load_recipe

        loaded = load_recipe(recipe)
        if make:
            return ensure_base(self.client, loaded, progress, force=force)
        with self._engine(f"looking for the {recipe} base"):
            return find_base(self.client, loaded)

    def run(
        self,
        image: str,
        argv: list[str],
        *,
        network: bool = True,
        env: Mapping[str, str] | None = None,
        files: RunFiles | None = None,
    ) -> ExecStream:
        from devenv.build.runner import one_shot

        name = f"devenv-run-{secrets.token_hex(6)}"
        items = one_shot(
            self.client,
            image,
            argv,
            network=network,
            host_config=security_settings(),
            labels={LABEL_BACKEND: self.name},
            name=name,
            environment=env,
            files=(files.tar, files.folder) if files is not None else None,
        )
        exit_code = 1

        def chunks() -> Iterator[tuple[str, bytes]]:
            nonlocal exit_code
            with closing(items):  # a reader that stops early removes the container now
                for item in items:
                    if isinstance(item, int):
                        exit_code = item
                    else:
                        yield item

        def stop() -> None:
            with suppress(APIError):  # gone already: it ended
                self.client.api.remove_container(name, force=True)

        return ExecStream(chunks(), lambda: exit_code, stop)

    def lock(self, project: Project, progress: Progress | None = None, *, upgrade: bool = False) -> bool:
        from devenv.build.project import lock_project

        return lock_project(self.client, project, progress, upgrade=upgrade)[1]

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
        """The production image of `facts.commit` (`code`: its git archive) on this engine, gated, and pushed
        with the person's `auth` when `push`."""
        from devenv.promote.package import promote

        self.build(project, progress)  # a remote host gets the base first; then promote's build is a lookup
        return promote(
            self.client, project, facts, code, tag=tag, push_to_registry=push, auth_config=auth, progress=progress
        )
