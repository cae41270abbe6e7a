"""Signed git webhooks, as GitHub signs them: a push that changes a devenv.lock prebuilds its image,
so the next `devenv up` of that spec and lock is a tag lookup.

The route is not behind a token (a forge cannot send one): the HMAC-SHA256 of the body, keyed with
the team secret DEVENV_WEBHOOK_SECRET, is its authentication. A bad or missing signature gets 401
and starts nothing; with no secret set, webhooks are off and every call gets 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from devenv.backends.base import ImageBuilder
from devenv.daemon.services.backends import Backends
from devenv.daemon.services.events import EventLog
from devenv.daemon.services.projects import Projects, check_upload
from devenv.daemon.services.secrets import Secrets
from devenv.errors import DevenvError, Unauthorized, UsageError
from devenv.upload import LOCK_FILENAME, SPEC_FILENAME, collect_project

log = logging.getLogger("devenvd.hooks")
SECRET_NAME = "DEVENV_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
TEAM = ""  # resolve() for no person: the team's secret only


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`, as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class GitHooks:
    def __init__(self, secrets: Secrets | None, projects: Projects, backends: Backends, events: EventLog) -> None:
        self.secrets = secrets
        self.projects = projects
        self.backends = backends
        self.events = events
        self.threads: list[threading.Thread] = []  # prebuilds under way (tests wait on them)

    def verify(self, body: bytes, signature: str | None) -> None:
        secret = self.secrets.resolve(TEAM, [SECRET_NAME]).values.get(SECRET_NAME) if self.secrets else None
        if not secret:
            raise Unauthorized(
                "webhooks are off: no team secret DEVENV_WEBHOOK_SECRET",
                hint="an admin sets it with `devenv secret set DEVENV_WEBHOOK_SECRET --team`, and "
                "gives the forge the same value",
            )
        if not signature or not hmac.compare_digest(signature.encode(), sign(secret, body).encode()):
            raise Unauthorized(
                f"the webhook's {SIGNATURE_HEADER} does not match its body",
                hint="the forge's webhook secret must be DEVENV_WEBHOOK_SECRET's value",
            )

    def handle(self, event: str, body: bytes) -> dict[str, Any]:
        """What the forge sent: a ping is answered; a push that changes a lock starts a prebuild."""
        if event == "ping":
            return {"ok": True}
        if event != "push":
            return {"ignored": event or "no event type"}
        try:
            payload = json.loads(body)
            url, commit = payload["repository"]["clone_url"], payload["after"]
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"a push webhook without repository.clone_url and after ({error})") from None
        changed = {
            path
            for entry in payload.get("commits") or []
            for key in ("added", "modified", "removed")
            for path in entry.get(key) or []
        }
        locks = sorted(path for path in changed if PurePosixPath(path).name == LOCK_FILENAME)
        ref = str(payload.get("ref", ""))
        if not locks:
            return {"prebuild": None, "reason": f"no {LOCK_FILENAME} changed in this push"}
        self.events.record(
            None,
            "prebuild",
            f"push to {url} {ref} at {commit[:12]} changed {', '.join(locks)}: prebuilding",
            actor="webhook",
        )
        thread = threading.Thread(target=self._prebuild, args=(url, commit, locks), name="prebuild", daemon=True)
        self.threads.append(thread)
        thread.start()
        return {"prebuild": "started", "commit": commit, "locks": locks}

    def _prebuild(self, url: str, commit: str, locks: list[str]) -> None:
        import git  # GitPython: the clone is the daemon's own, on its machine

        with tempfile.TemporaryDirectory(prefix="devenv-prebuild-") as tmp:
            try:
                repo = git.Repo.clone_from(url, tmp, no_checkout=True)
                repo.git.checkout(commit)
            except git.GitError as error:
                self.events.record(
                    None,
                    "prebuild",
                    f"prebuild of {url} at {commit[:12]} failed: cannot clone "
                    f"({str(error).strip().splitlines()[-1][:300]})",
                    actor="webhook",
                )
                return
            for lock in locks:
                spec = Path(tmp) / PurePosixPath(lock).parent / SPEC_FILENAME
                try:
                    self._build(spec, lock)
                except DevenvError as error:
                    self.events.record(
                        None,
                        "prebuild",
                        f"prebuild of {lock} at {commit[:12]} failed: {error.render()}",
                        actor="webhook",
                    )
                except Exception as error:  # a bug must not kill the daemon; the event says what happened
                    log.exception("prebuild of %s", lock)
                    self.events.record(
                        None, "prebuild", f"prebuild of {lock} failed unexpectedly: {error!r}", actor="webhook"
                    )

    def _build(self, spec: Path, lock: str) -> None:
        if not (spec.parent / LOCK_FILENAME).is_file():
            self.events.record(
                None, "prebuild", f"{lock} was removed in this push: nothing to prebuild", actor="webhook"
            )
            return
        sent = collect_project(spec)
        upload = check_upload(str(PurePosixPath(lock).parent / SPEC_FILENAME), sent["files"])
        project = self.projects.open(upload)
        self.projects.plan(upload)  # a lock that does not match its spec: said now, nothing built
        backend = self.backends.get(project.spec.backend)
        if not isinstance(backend, ImageBuilder):
            raise DevenvError(f"backend {backend.name} cannot build images")
        result = backend.build(project)
        self.events.record(
            None,
            "prebuild",
            f"prebuilt {result.tag} for {lock} "
            f"({'already there' if result.cached else f'built in {result.seconds:.0f}s'})",
            actor="webhook",
        )
