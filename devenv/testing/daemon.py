"""A daemon assembled around a FakeBackend, with a real store (SQLite) and the real API app.

Unit tests of the API, the reconciler and (later) the TUI share it; integration tests use a
real devenvd process instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.daemon.api.app import create_app
from devenv.daemon.process.server import Daemon, Settings, assemble
from devenv.daemon.services.backends import BackendEntry, Backends
from devenv.daemon.store.db import make_engine, migrate, session_factory
from devenv.testing.fake_backend import FakeBackend
from devenv.testing.fake_images import write_fake_lock
from devenv.testing.projects import copy_template


@dataclass
class FakeDaemon:
    daemon: Daemon
    backend: FakeBackend
    app: Any
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def fake_daemon(
    folder: Path,
    backend: FakeBackend | None = None,
    *,
    settings: Settings | None = None,
    extra: dict[str, FakeBackend] | None = None,
) -> FakeDaemon:
    folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    migrate(engine)
    backend = backend or FakeBackend("local")
    entries = {"local": BackendEntry("local", "fake", backend.url, backend)}
    for name, other in (extra or {}).items():
        entries[name] = BackendEntry(name, "fake", other.url, other)
    daemon = assemble(session_factory(engine), Backends(entries), folder, settings)
    token = daemon.services.tokens.create("tester")
    return FakeDaemon(daemon, backend, create_app(daemon.services), token)


def project_upload(
    folder: Path,
    *,
    template: str = "minimal",
    name: str | None = None,
    lock: bool = True,
    edit: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A project folder from a template (with a fake lock) and the upload a client would send for it."""
    from devenv.build.project import open_project
    from devenv.upload import collect_project

    spec = copy_template(template, folder, project_name=name)
    for old, new in (edit or {}).items():
        spec.write_text(spec.read_text().replace(old, new))
    if lock:
        write_fake_lock(open_project(spec))
    upload = collect_project(spec)
    upload["spec_path"] = "devenv.yaml"
    return upload
