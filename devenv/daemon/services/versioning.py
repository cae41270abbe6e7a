"""Status, data pulls and reproducibility records of workspaces (the versioning routes' service).

A snapshot records what pins a workspace now: image hash and tag, base digest, lock hash, the
project upload it was built from, the git commit (and a hash of the diff when dirty), the DVC data
hashes and the W&B runs seen. `up --from-snapshot` makes a workspace from the same upload (so the
same image hash: a tag lookup, or a rebuild to the same hash), pinned to the same commit, whose
data is then pulled at that commit: the same checksums.
"""

from __future__ import annotations

import secrets as token_source
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import Observed
from devenv.build.verify import verified_at
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.setup import WorkspaceSetup, secret_names
from devenv.daemon.services.workspaces import Accepted, WorkspaceService
from devenv.daemon.store import states
from devenv.daemon.store.tables import Snapshot, Workspace
from devenv.errors import DevenvError, SnapshotNotFound, UsageError, WorkspaceBusy
from devenv.versioning.scripts import repo_dir


def snapshot_json(row: Snapshot) -> dict[str, Any]:
    return {
        "id": row.id,
        "workspace": row.workspace,
        "owner": row.owner,
        "made_by": row.made_by,
        "created_at": row.created_at.timestamp() if row.created_at else None,
        **row.record,
    }


class Versioning:
    def __init__(
        self, sessions: sessionmaker[Session], workspaces: WorkspaceService, setup: WorkspaceSetup, events: EventLog
    ) -> None:
        self.sessions = sessions
        self.workspaces = workspaces
        self.setup = setup
        self.events = events

    def require_running(self, name: str) -> Workspace:
        ws = self.workspaces.get(name)
        if not states.container_up(ws.state, ws.error_code):
            raise WorkspaceBusy(f"workspace {name} is {ws.state}, not running", hint=f"`devenv start {name}` first")
        return ws

    # -- status --------------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        """What the workspace is pinned to and what its setup found; the clone read live when running."""
        ws = self.workspaces.get(name)
        spec = self.setup.spec(ws)
        summary = self.workspaces.project_summary(name)
        setup = dict(ws.setup or {})
        answer: dict[str, Any] = {
            "name": ws.name,
            "state": ws.state,
            "reason": ws.reason,
            "image": ws.image_tag,
            "image_hash": ws.image_hash,
            "lock_hash": summary["lock_hash"],
            "base_digest": summary["base_digest"],
            "pins": ws.pins or {},
            "secrets": setup.get("secrets") or {"delivered": [], "missing": []},
            "secrets_needed": secret_names(spec) if spec else [],
            "repo": None,
            "data": None,
            "tracking": None,
            **self._image_proof(ws),
        }
        if spec is not None and spec.repo is not None:
            repo: dict[str, Any] = {
                "url": spec.repo.url,
                "ref": spec.repo.ref,
                "path": repo_dir(spec.repo),
                **(setup.get("repo") or {}),
            }
            facts = setup.get("repo_facts")
            if states.container_up(ws.state, ws.error_code):
                live = self.setup.facts(ws, self.workspaces.backends.get(ws.backend))
                facts = live.to_json()["repo"]
                if setup.get("data"):
                    setup["data"]["hash_now"] = live.data_hash
            repo["git"] = facts
            answer["repo"] = repo
        if spec is not None and spec.data is not None:
            answer["data"] = {
                "remote": spec.data.remote,
                "endpoint": spec.data.endpoint,
                "paths": spec.data.paths,
                **(setup.get("data") or {"status": "not pulled yet"}),
            }
        if spec is not None and spec.tracking is not None and spec.tracking.wandb is not None:
            answer["tracking"] = {"wandb": spec.tracking.wandb.model_dump()}
        return answer

    def _image_proof(self, ws: Workspace) -> dict[str, str | None]:
        """The image the container runs and whether `devenv verify` proved it (a record in this machine's
        cache: verify runs beside the engine that built the image)."""
        observed = next((seen for seen in self._observe(ws) if seen.workspace == ws.name), None)
        image_id = observed.image_id if observed else None
        return {"image_id": image_id, "verified_at": verified_at(image_id) if image_id else None}

    def _observe(self, ws: Workspace) -> list[Observed]:
        if not ws.backend:
            return []
        try:
            return self.workspaces.backends.get(ws.backend).list_workspaces()
        except DevenvError:  # an engine that does not answer: the status says what it can without it
            return []

    # -- data ----------------------------------------------------------------------------------

    def pull(self, actor: str, name: str) -> dict[str, Any]:
        """Clone what is missing, then pull the spec's data again (`devenv data pull`)."""
        ws = self.require_running(name)
        spec = self.setup.spec(ws)
        if spec is None or spec.data is None:
            raise UsageError(
                f"workspace {name} has no `data:` in its spec",
                hint="add `data: {remote: ..., paths: [...]}` to devenv.yaml, then `devenv up`",
            )
        self.events.record(name, "api", "data pull", actor=actor)
        return self.setup.run(ws, self.workspaces.backends.get(ws.backend), pull=True)

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self, actor: str, name: str, note: str | None = None) -> dict[str, Any]:
        ws = self.require_running(name)
        summary = self.workspaces.project_summary(name)
        facts = self.setup.facts(ws, self.workspaces.backends.get(ws.backend))
        spec = self.setup.spec(ws)
        record: dict[str, Any] = {
            "note": note,
            "image": ws.image_tag,
            "image_hash": ws.image_hash,
            "lock_hash": summary["lock_hash"],
            "base_digest": summary["base_digest"],
            "project_hash": ws.project_hash,
            "backend": ws.backend,
            "repo": None,
            "data": None,
            "wandb_runs": facts.wandb_runs,
        }
        if spec is not None and spec.repo is not None and facts.repo is not None:
            record["repo"] = {
                "url": spec.repo.url,
                "folder": spec.repo.folder,
                "commit": facts.repo.commit,
                "branch": facts.repo.branch,
                "dirty": facts.repo.dirty,
                "diff_hash": facts.repo.diff_hash,
            }
        if spec is not None and spec.data is not None:
            record["data"] = {
                "remote": spec.data.remote,
                "paths": spec.data.paths,
                "hash": facts.data_hash,
                "files": facts.data_files,
            }
        snapshot_id = token_source.token_hex(6)
        with self.sessions.begin() as session:
            row = Snapshot(
                id=snapshot_id,
                workspace=name,
                owner=ws.owner,
                made_by=actor,
                project_hash=ws.project_hash,
                record=record,
            )
            session.add(row)
            session.flush()
            answer = snapshot_json(row)
        dirty = " (tree dirty: its diff is hashed, not kept)" if record["repo"] and record["repo"]["dirty"] else ""
        self.events.record(name, "api", f"snapshot {snapshot_id}{dirty}", actor=actor)
        return answer

    def snapshots(self, workspace: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        with self.sessions() as session:
            statement = select(Snapshot).order_by(Snapshot.created_at.desc()).limit(limit)
            if workspace:
                statement = statement.where(Snapshot.workspace == workspace)
            return [snapshot_json(row) for row in session.scalars(statement)]

    def get(self, snapshot_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            row = session.get(Snapshot, snapshot_id)
            if row is None:
                raise SnapshotNotFound(f"no snapshot {snapshot_id!r}", hint="`devenv snapshots` lists them")
            return snapshot_json(row)

    def default_name(self, snapshot_id: str) -> str:
        """The name `up --from-snapshot` gives when none is asked for: WORKSPACE-ID."""
        return f"{self.get(snapshot_id)['workspace']}-{snapshot_id[:6]}"

    def up(self, actor: str, snapshot_id: str, name: str | None) -> Accepted:
        """A workspace at exactly the snapshot's versions: same upload (image), same commit, its data."""
        record = self.get(snapshot_id)
        if not record.get("project_hash"):
            raise UsageError(f"snapshot {snapshot_id} is of an adopted workspace: it has no project to build from")
        upload = self.workspaces.projects.load(record["project_hash"])
        name = name or self.default_name(snapshot_id)
        pins = {"snapshot": snapshot_id}
        if record.get("repo") and record["repo"].get("commit"):
            pins["commit"] = record["repo"]["commit"]
        accepted = self.workspaces.up(actor, upload, name, pins=pins)
        if record.get("repo") and record["repo"].get("dirty"):
            self.events.record(
                name,
                "setup",
                f"snapshot {snapshot_id} was taken with uncommitted changes (diff "
                f"{str(record['repo']['diff_hash'])[:12]}); they are not reproduced, only the commit",
                actor="devenvd",
            )
        return accepted
