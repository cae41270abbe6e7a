"""The project's code in the workspace: the folder the client uploaded with `up` (tracked and untracked
files minus .gitignore), placed into the home on the first start.

Why only then: after the first start the folder is the person's, edited in the workspace; later edits
made on their machine go in with `devenv sync`, which compares before it writes (devenv/daemon/api/code.py).
The manifest of what was placed (path -> sha256) is kept on the workspace's record (`code.placed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import HOME_MOUNT
from devenv.code import deliver
from devenv.code.manifest import human_size
from devenv.code.store import CodeStore
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.versioning.steps import StepResult

if TYPE_CHECKING:
    from devenv.daemon.services.setup import StepContext

_DONE = ("placed", "present")


@dataclass(frozen=True)
class CodeResult(StepResult):
    @property
    def ok(self) -> bool:
        return self.status in _DONE


def store_for(projects_root: Path) -> CodeStore:
    """The daemon's code uploads, beside its projects (DEVENV_HOME/code)."""
    return CodeStore(projects_root.parent / "code")


def run(context: StepContext) -> dict[str, Any] | None:
    """What this step found, kept on the record under setup["code"]; None when there is nothing to do."""
    previous: dict[str, Any] | None = context.setup.get("code")
    if previous and previous.get("ok") and previous.get("folder"):
        return previous  # placed once per home volume: the folder is the person's now
    code = context.ws.code or {}
    digest, folder = code.get("hash"), code.get("folder")
    if not digest or not folder:
        return previous
    store = store_for(context.projects.root)
    details: dict[str, Any] = {
        "folder": f"{HOME_MOUNT}/{folder}",
        "hash": digest,
        "source": code.get("source"),
        "files": 0,
        "bytes": 0,
    }

    def place(line: Any) -> StepResult:
        if not store.tar(digest).is_file():
            return CodeResult(
                "failed",
                f"the uploaded code {digest[:12]} is gone from the daemon",
                hint=f"`devenv sync {context.ws.name}` uploads it again",
            )
        manifest = store.manifest(digest)
        result = deliver.run(
            context.backend,
            context.handle,
            store.tar(digest),
            {"mode": "first", "folder": folder, "new": manifest.entries},
            line,
        )
        if result.get("status") == "placed":
            details.update(files=manifest.files, bytes=manifest.bytes)
            record_placed(context.sessions, context.ws.name, digest, folder, manifest.entries)
            return CodeResult(
                "placed", f"code: {manifest.files} files, {human_size(manifest.bytes)} placed in {details['folder']}"
            )
        if result.get("status") == "present":
            return CodeResult("present", f"{details['folder']} is in the home already: left as it is")
        return CodeResult(
            "failed",
            f"code not placed in {details['folder']}: {result.get('message', '')[:400]}",
            hint="check the folder's files, then `devenv rebuild` or `devenv sync --force`",
        )

    context.status(f"placing the project's code in {details['folder']}")
    record = context.step("code", place)
    return {**record, **details}


def record_placed(
    sessions: sessionmaker[Session], name: str, digest: str, folder: str, manifest: dict[str, str], source: Any = None
) -> None:
    """What is in the workspace now: the manifest a later sync compares with."""
    WorkspaceRecords(sessions).merge_code(
        name,
        {
            "placed": {
                "hash": digest,
                "folder": folder,
                "manifest": manifest,
                "at": time.time(),
                **({"source": source} if source is not None else {}),
            }
        },
    )
