"""A workspace's setup after each start: its secrets on the tmpfs, its pins in workspace.env, its
repo cloned (first start only), its DVC data pulled (until a pull succeeds), its facts read.

A step that fails for a reason the person can fix (a missing secret, a repo that cannot be cloned,
a remote that does not answer) does not stop the workspace: the event says what failed and how to
fix it, `devenv status` shows it, and nothing in the home volume is lost or overwritten. What each
step found is kept on the record (`setup`), so the next start knows what is left to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devenv.backends.base import Backend, Handle
from devenv.daemon.services import code_step, dotfiles_step, lifecycle
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.grant_table import withholding_secrets
from devenv.daemon.services.projects import Projects
from devenv.daemon.services.secrets import PERSON, ResolvedSecrets, Secrets
from devenv.daemon.store import states
from devenv.daemon.store.tables import Secret, Workspace
from devenv.daemon.store.workspaces import WorkspaceRecords
from devenv.errors import BackendError, EngineUnreachable
from devenv.spec.models import Spec
from devenv.versioning import steps
from devenv.versioning.env import WORKSPACE_ENV_PATH, secret_files, workspace_env
from devenv.versioning.facts import Facts
from devenv.versioning.scripts import repo_dir

log = logging.getLogger("devenvd.setup")
WANDB_KEY = "WANDB_API_KEY"
_LIVE_EVERY = 0.25  # seconds between live progress lines of one step (git and dvc print many)


def secret_names(spec: Spec) -> list[str]:
    """Every secret the spec needs: its list, the repo's token, W&B's key when tracking is on."""
    names = list(spec.secrets)
    if spec.repo is not None and spec.repo.token_secret:
        names.append(spec.repo.token_secret)
    if spec.tracking is not None and spec.tracking.wandb is not None:
        names.append(WANDB_KEY)
    return list(dict.fromkeys(names))


@dataclass
class StepContext:
    """What one setup step needs: the workspace, its spec and engine, and how to report.

    A step module (code, dotfiles, lifecycle hooks) gets this and returns what it found, kept on the
    workspace's record under its own key; `setup` holds what earlier steps found in this run and what
    the last run stored (so a step done once per home volume knows it is done)."""

    ws: Workspace
    spec: Spec | None
    backend: Backend
    handle: Handle
    setup: dict[str, Any]
    status: Callable[[str], None]  # one line as a step begins (shown by `devenv up` and the TUI)
    events: EventLog
    sessions: sessionmaker[Session]
    projects: Projects
    step: Callable[[str, Callable[[Callable[[str], None]], steps.StepResult]], dict[str, Any]]  # StepResult runner:
    # live progress lines and an event on failure; returns the record to keep


class WorkspaceSetup:
    def __init__(
        self, sessions: sessionmaker[Session], projects: Projects, events: EventLog, secrets: Secrets | None
    ) -> None:
        self.sessions = sessions
        self.records = WorkspaceRecords(sessions)
        self.projects = projects
        self.events = events
        self.secrets = secrets
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def spec(self, ws: Workspace) -> Spec | None:
        if not ws.project_hash:
            return None
        return self.projects.open(self.projects.load(ws.project_hash)).spec

    def outdated(self, ws: Workspace) -> bool:
        """Whether a running workspace's setup did not finish for its current project (a daemon killed
        mid-setup leaves it STARTING; an `up` with a changed repo or data keeps the same container)."""
        done = (ws.setup or {}).get("project_hash")
        return ws.state == states.STARTING or (ws.project_hash is not None and done != ws.project_hash)

    def env_files(self, ws: Workspace) -> dict[str, bytes]:
        """workspace.env as it stands, to place with the other files before a start (one call then,
        instead of a replace in the running container)."""
        return {WORKSPACE_ENV_PATH: self._env_body(ws, self.spec(ws), ((ws.setup or {}).get("data") or {}).get("hash"))}

    def run(
        self,
        ws: Workspace,
        backend: Backend,
        *,
        pull: bool = False,
        env_placed: bool = False,
        status: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Every step, in order; returns (and stores) what each found. `pull` pulls data even when
        an earlier pull succeeded (`devenv data pull`); `env_placed`: workspace.env went in before
        the start (env_files). `status` hears each step as it begins."""
        with self._lock(ws.name):
            return self._run(ws, backend, pull=pull, env_placed=env_placed, status=status or (lambda _message: None))

    def _run(
        self, ws: Workspace, backend: Backend, *, pull: bool, env_placed: bool, status: Callable[[str], None]
    ) -> dict[str, Any]:
        spec = self.spec(ws)
        handle = Handle.for_workspace(ws.name)
        setup: dict[str, Any] = dict(ws.setup or {})
        setup["secrets"] = self._secrets(ws, spec, backend, handle)
        data_state = dict(setup.get("data") or {})
        if not env_placed:
            self._place_env(ws, spec, backend, handle, data_state.get("hash"))
        context = StepContext(
            ws,
            spec,
            backend,
            handle,
            setup,
            status,
            self.events,
            self.sessions,
            self.projects,
            lambda what, run: self._step(ws, what, run),
        )
        facts: Facts | None = None
        if spec is not None and spec.repo is None:
            setup["code"] = code_step.run(context)  # the project's folder, uploaded by the client
        if spec is not None and spec.repo is not None:
            repo, pinned = spec.repo, (ws.pins or {}).get("commit")
            facts = self._facts(ws, spec, backend, handle)  # a clone there already: one exec, no clone step
            if facts is not None and facts.repo is not None:
                if not (setup.get("repo") or {}).get("ok"):
                    setup["repo"] = {
                        "status": "present",
                        "ok": True,
                        "hint": None,
                        "at": time.time(),
                        "message": f"{repo_dir(repo)} is a clone",
                    }
            else:
                status(f"cloning {repo.url}")
                setup["repo"] = self._step(
                    ws, "repo", lambda line: steps.clone(backend, handle, repo, line, ref=pinned)
                )
                facts = None
        wants_data = spec is not None and spec.repo is not None and spec.data is not None
        if wants_data and (pull or data_state.get("status") != "pulled"):
            assert spec is not None and spec.repo is not None and spec.data is not None
            repo, data = spec.repo, spec.data
            if setup["repo"]["ok"]:
                status(f"pulling DVC data from {data.remote}")
                data_state = self._step(ws, "data", lambda line: steps.pull_data(backend, handle, repo, data, line))
                facts = None
            else:
                data_state = {
                    "status": "failed",
                    "ok": False,
                    "at": time.time(),
                    "message": "no data pulled: the repo step failed first",
                    "hint": setup["repo"].get("hint"),
                }
        if facts is None and spec is not None and spec.repo is not None:
            facts = self._facts(ws, spec, backend, handle)
        if facts is not None:
            setup["repo_facts"] = facts.to_json()["repo"]
            if data_state.get("status") == "pulled" and data_state.get("hash") != facts.data_hash:
                data_state.update(hash=facts.data_hash, files=facts.data_files)
                self._place_env(ws, spec, backend, handle, facts.data_hash)
        if data_state:
            setup["data"] = data_state
        setup["dotfiles"] = dotfiles_step.run(context)  # the owner's dotfiles repository
        setup["hooks"] = lifecycle.run(context)  # hooks.create once per home volume, hooks.start every start
        setup["project_hash"] = ws.project_hash
        self._store(ws, setup)
        return setup

    # -- steps ---------------------------------------------------------------------------------

    def _secrets(self, ws: Workspace, spec: Spec | None, backend: Backend, handle: Handle) -> dict[str, Any]:
        names = secret_names(spec) if spec is not None else []
        if not names:  # the tmpfs starts empty with each run: nothing to place, no call to make
            return {"delivered": [], "missing": []}
        with self.sessions() as session:
            sharing = withholding_secrets(session, ws.name)  # a grantee runs as dev too: keep the owner's out
        resolved = (
            self.secrets.resolve(ws.owner, names, personal=not sharing)
            if self.secrets is not None
            else ResolvedSecrets(values={}, missing=names)
        )
        try:
            backend.put_secrets(handle, secret_files(resolved.values))
        except EngineUnreachable:
            raise
        except BackendError as error:  # an old container without the tmpfs: it runs, without secrets
            self.events.record(ws.name, "setup", f"secrets not placed: {error.render()}", actor="devenvd")
            return {"delivered": [], "missing": names, "error": error.message}
        for name in resolved.missing:
            if name in resolved.withheld:
                continue
            self.events.record(
                ws.name,
                "setup",
                f"secret {name} is not set for {ws.owner} or the team; the "
                f"workspace runs without it (fix: `devenv secret set {name}`, then restart it)",
                actor="devenvd",
            )
        if resolved.withheld:
            self.events.record(
                ws.name,
                "setup",
                f"{ws.owner}'s own secrets {', '.join(resolved.withheld)} are not "
                f"placed: the workspace is shared with {', '.join(sharing)} (fix: grant with "
                f"--share-secrets, or end the grant and restart it)",
                actor="devenvd",
            )
        return {
            "delivered": sorted(resolved.values),
            "missing": list(resolved.missing),
            "personal": list(resolved.personal),
            "withheld": list(resolved.withheld),
        }

    def _place_env(
        self, ws: Workspace, spec: Spec | None, backend: Backend, handle: Handle, data_hash: str | None
    ) -> None:
        backend.put_files(handle, {WORKSPACE_ENV_PATH: self._env_body(ws, spec, data_hash)})

    def _env_body(self, ws: Workspace, spec: Spec | None, data_hash: str | None) -> bytes:
        lock_hash = base_digest = None
        if ws.project_hash:
            upload = self.projects.load(ws.project_hash)
            if upload.has_lock:
                lock = self.projects.plan(upload).lock
                lock_hash, base_digest = lock.content_hash(), lock.base.digest
        return workspace_env(
            spec, image_hash=ws.image_hash, lock_hash=lock_hash, base_digest=base_digest, data_hash=data_hash
        )

    def _step(
        self, ws: Workspace, what: str, run: Callable[[Callable[[str], None]], steps.StepResult]
    ) -> dict[str, Any]:
        last = [0.0]

        def line(text: str) -> None:
            now = time.monotonic()
            if now - last[0] >= _LIVE_EVERY:
                last[0] = now
                self.events.live(ws.name, "progress", text[:300], data={"kind": what})

        try:
            result = run(line)
        except EngineUnreachable:
            raise
        except BackendError as error:
            result = steps.StepResult("failed", f"{what} step failed: {error.message}", hint=error.hint)
        if result.status != "present":
            message = result.message + (f" (fix: {result.hint})" if result.hint and not result.ok else "")
            if result.output and not result.ok:
                message += "\n" + result.output[-600:]
            self.events.record(ws.name, "setup", message, actor="devenvd")
        return {
            "status": result.status,
            "ok": result.ok,
            "message": result.message,
            "hint": result.hint,
            "at": time.time(),
        }

    def _facts(self, ws: Workspace, spec: Spec | None, backend: Backend, handle: Handle) -> Facts | None:
        try:
            return steps.read_facts(backend, handle, spec.repo if spec is not None else None)
        except EngineUnreachable:
            raise
        except (BackendError, ValueError) as error:
            log.warning("reading facts of %s: %s", ws.name, error)
            return None

    def facts(self, ws: Workspace, backend: Backend) -> Facts:
        """Read now (for `devenv status` and snapshots): raises what the engine raises."""
        spec = self.spec(ws)
        return steps.read_facts(backend, Handle.for_workspace(ws.name), spec.repo if spec is not None else None)

    def _store(self, ws: Workspace, setup: dict[str, Any]) -> None:
        self.records.set_setup(ws.name, setup)
        ws.setup = setup


def placed_personal(sessions: sessionmaker[Session], ws: Workspace) -> list[str]:
    """The owner's own secrets the running workspace holds: as its setup recorded them, or (a setup from
    before that record) each delivered name the owner has a secret of their own by."""
    placed = (ws.setup or {}).get("secrets") or {}
    if "personal" in placed:
        return list(placed["personal"] or [])
    delivered = list(placed.get("delivered") or [])
    if not delivered:
        return []
    with sessions() as session:
        own = set(
            session.scalars(
                select(Secret.name).where(Secret.scope == PERSON, Secret.person == ws.owner, Secret.name.in_(delivered))
            )
        )
    return [name for name in delivered if name in own]


def record_withheld(sessions: sessionmaker[Session], events: EventLog, workspace: str, names: list[str]) -> None:
    """The owner's personal secrets `names` were taken out of the running workspace (a grant without
    --share-secrets): its record says so, and so do its events."""

    def withhold(setup: dict[str, Any]) -> dict[str, Any]:
        placed = dict(setup.get("secrets") or {})
        placed["delivered"] = [name for name in placed.get("delivered") or [] if name not in names]
        placed["personal"] = []
        placed["withheld"] = sorted({*(placed.get("withheld") or []), *names})
        return {**setup, "secrets": placed}

    ws = WorkspaceRecords(sessions).edit_setup(workspace, withhold)
    if ws is None:
        return
    owner = ws.owner
    events.record(
        workspace,
        "access",
        f"took {owner}'s own secrets {', '.join(names)} out of the running workspace: "
        f"it is shared without --share-secrets (processes that read them before keep them until the "
        f"workspace restarts)",
        actor="devenvd",
    )
