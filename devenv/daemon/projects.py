"""Projects uploaded by clients: devenv.yaml, devenv.lock and the requirement files, by content hash.

The daemon may run on another machine than the person's project folder, so clients send the few
small files a build needs; the daemon keeps each distinct upload once and unpacks it into its own
folder to build. Errors name the files as the person knows them, never the daemon's copies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from devenv.build.plan import BuildPlan
from devenv.build.project import Project, checked_lock, open_project, project_plan
from devenv.daemon.tables import Project as ProjectRow
from devenv.errors import LockMismatch, LockMissing, SpecInvalid, UsageError
from devenv.lock.models import LOCK_FILENAME

T = TypeVar("T")

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 64


@dataclasses.dataclass(frozen=True)
class Upload:
    """A project as a client sent it."""

    spec_path: str  # as the person named it ("devenv.yaml", "ml/devenv.yaml"): used in messages
    files: dict[str, str]  # relative to the spec's folder -> text

    @property
    def hash(self) -> str:
        body = json.dumps({"spec": PurePosixPath(self.spec_path).name, "files": self.files}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def has_lock(self) -> bool:
        return LOCK_FILENAME in self.files


def check_upload(spec_path: str, files: dict[str, Any]) -> Upload:
    """Refuse paths that escape the project folder, oversized files, and a missing spec."""
    if len(files) > MAX_FILES:
        raise UsageError(f"a project upload holds at most {MAX_FILES} files, got {len(files)}")
    clean: dict[str, str] = {}
    for raw, text in files.items():
        path = PurePosixPath(raw)
        if path.is_absolute() or ".." in path.parts or not path.parts or raw != str(path):
            raise UsageError(f"project file {raw!r}: must be a plain path inside the project folder")
        if not isinstance(text, str) or len(text.encode()) > MAX_FILE_BYTES:
            raise UsageError(f"project file {raw!r}: must be text under {MAX_FILE_BYTES // 1024 // 1024} MiB")
        clean[str(path)] = text
    name = PurePosixPath(spec_path).name
    if name not in clean:
        raise UsageError(f"the upload does not contain the spec {spec_path}")
    return Upload(spec_path=spec_path, files=clean)


class _Memo(Generic[T]):
    """Values made from immutable content, by its hash: bounded and thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._values: dict[str, T] = {}
        self._lock = threading.Lock()

    def get_or_make(self, key: str, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                return self._values[key]
        value = make()  # outside the lock: two threads may both make it, and both get the same
        with self._lock:
            if len(self._values) >= self._size:
                self._values.clear()
            self._values[key] = value
        return value


class Projects:
    """Uploads are immutable by hash, so what is made from one (project, plan) is made once."""

    def __init__(self, sessions: sessionmaker[Session], root: Path) -> None:
        self.sessions = sessions
        self.root = root
        self._uploads: _Memo[Upload] = _Memo()
        self._projects: _Memo[Project] = _Memo()
        self._plans: _Memo[BuildPlan] = _Memo()

    def save(self, upload: Upload) -> str:
        digest = upload.hash
        try:
            with self.sessions.begin() as session:
                if session.get(ProjectRow, digest) is None:
                    session.add(ProjectRow(hash=digest, spec_path=upload.spec_path, files=upload.files))
        except IntegrityError:  # the same upload saved by a concurrent request: it is there
            pass
        return digest

    def load(self, digest: str) -> Upload:
        return self._uploads.get_or_make(digest, lambda: self._load(digest))

    def _load(self, digest: str) -> Upload:
        with self.sessions() as session:
            row = session.get(ProjectRow, digest)
            if row is None:
                raise LockMissing(f"the daemon has no stored project {digest[:12]}",
                                  hint="run `devenv up` from the project folder")
            return Upload(spec_path=row.spec_path, files=dict(row.files))

    def unpack(self, upload: Upload) -> Path:
        """The upload's files in a folder of the daemon's own (written once per content hash)."""
        folder = self.root / upload.hash
        if folder.is_dir():
            return folder
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".unpack-"))
        for relative, text in upload.files.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        try:
            os.rename(staging, folder)
        except OSError:  # another thread unpacked the same upload first
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    def open(self, upload: Upload) -> Project:
        """The project, validated: SpecInvalid names the person's file, line and field."""
        return self._projects.get_or_make(upload.hash, lambda: self._open(upload))

    def _open(self, upload: Upload) -> Project:
        folder = self.unpack(upload)
        spec_name = PurePosixPath(upload.spec_path).name
        try:
            return open_project(folder / spec_name)
        except SpecInvalid as invalid:
            raise SpecInvalid([dataclasses.replace(issue, file=upload.spec_path) for issue in invalid.issues]) from None

    def plan(self, upload: Upload) -> BuildPlan:
        """The build plan (image tag and hash); LockMismatch names the person's devenv.lock."""
        return self._plans.get_or_make(upload.hash, lambda: self._plan(upload, self.open(upload)))

    def _plan(self, upload: Upload, project: Project) -> BuildPlan:
        lock_name = str(PurePosixPath(upload.spec_path).parent / LOCK_FILENAME)
        try:
            lock = checked_lock(project)
        except LockMismatch as mismatch:
            raise LockMismatch(mismatch.differences, lock_path=lock_name) from None
        except LockMissing as missing:
            raise LockMissing(f"{lock_name}: {missing.message}", hint="run `devenv lock`") from None
        return project_plan(project, lock, provenance=False)

    def resolve_lock(self, upload: Upload, lock: Callable[[Project], None]) -> Upload:
        """The upload with the devenv.lock that `lock` writes, resolved in a private copy.

        The content-addressed folders are never written after unpacking, so locking works on a copy.
        """
        spec_name = self.open(upload).spec_path.name  # validates first, with the person's file names
        folder = Path(tempfile.mkdtemp(dir=self.root, prefix=".lock-"))
        try:
            for relative, text in upload.files.items():
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            lock(open_project(folder / spec_name))
            lock_text = (folder / LOCK_FILENAME).read_text()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return Upload(spec_path=upload.spec_path, files={**upload.files, LOCK_FILENAME: lock_text})
