"""What the daemon does for `devenv promote`, in this process: the facts and the archive the CLI sends it, then
the promotion on an engine. For tests and benchmarks of the promotion itself, without a daemon between."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from devenv.build.project import open_project
from devenv.engine.sdk import DockerClient
from devenv.promote.package import Promotion, promote
from devenv.versioning.commit import read_commit, write_archive


def promote_here(client: DockerClient, folder: Path, **options: Any) -> Promotion:
    """`folder`'s HEAD (devenv.yaml in it) promoted on `client`'s engine; `options` as promote's."""
    facts, root = read_commit(folder)
    with tempfile.NamedTemporaryFile(prefix="promote-here-") as code:
        write_archive(root, facts.commit, code)
        code.flush()
        return promote(client, open_project(folder / "devenv.yaml"), facts, Path(code.name), **options)
