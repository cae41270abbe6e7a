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
from devenv.confinement import HostFolders, name_problem, normal_path, project_path_problem
from devenv.daemon.services.backends import load_host_folders
from devenv.daemon.store.tables import Project as ProjectRow
from devenv.engine.connect import is_local_engine
from devenv.errors import LockMismatch, LockMissing, SpecInvalid, SpecIssue, UsageError
from devenv.lock.models import LOCK_FILENAME
from devenv.spec import SPEC_FILENAME, Spec
from devenv.spec.loader import issue_at

T = TypeVar("T")

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_FILES = 64
_LEFTOVERS = (".unpack-*", ".lock-*")


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


def _shown(name: object) -> str:
    """A name as a message quotes it: escaped (NUL, newlines, surrogates) and cut short."""
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _utf8_size(text: str) -> int | None:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: JSON carries it, no file or store can
        return None


def check_upload(spec_path: str, files: dict[str, Any]) -> Upload:
    """Refuse what cannot be unpacked as plain files inside one folder, before anything is stored or written:
    names that escape it or hold control characters, over-long names, a file beside a folder of the same
    name, text that is not UTF-8, oversized files and totals, and a missing spec. Each a UsageError (400)."""
    if not isinstance(files, dict) or not isinstance(spec_path, str):
        raise UsageError("a project upload is a spec path and a mapping of file names to text")
    if len(files) > MAX_FILES:
        raise UsageError(f"a project upload holds at most {MAX_FILES} files, got {len(files)}")
    if (problem := name_problem(spec_path)) is not None:
        raise UsageError(f"the spec path {_shown(spec_path)} {problem}")
    clean: dict[str, str] = {}
    total = 0
    for raw, text in files.items():
        if not isinstance(raw, str) or (problem := project_path_problem(raw)) is not None:
            problem = problem if isinstance(raw, str) else "is not text"
            raise UsageError(
                f"project file {_shown(raw)}: its name {problem}",
                hint="send plain relative paths inside the project folder",
            )
        size = _utf8_size(text) if isinstance(text, str) else None
        if size is None:
            raise UsageError(f"project file {_shown(raw)}: not UTF-8 text")
        if size > MAX_FILE_BYTES:
            raise UsageError(f"project file {_shown(raw)}: over {MAX_FILE_BYTES // 1024 // 1024} MiB")
        total += size
        clean[raw] = text
    if total > MAX_UPLOAD_BYTES:
        raise UsageError(f"a project upload holds at most {MAX_UPLOAD_BYTES // 1024 // 1024} MiB of text")
    folders = {str(parent) for name in clean for parent in PurePosixPath(name).parents} - {"."}
    clashes = sorted(folders & clean.keys())
    if clashes:
        raise UsageError(f"project file {_shown(clashes[0])} is also a folder of other files: one name cannot be both")
    name = PurePosixPath(spec_path).name
    if name not in clean:
        raise UsageError(f"the upload does not contain the spec {_shown(spec_path)}")
    return Upload(spec_path=spec_path, files=clean)


def _as_sent(file: str, folder: Path, upload: Upload) -> str:
    """A file of the daemon's copy as the person named it: the spec's path, or a file beside it."""
    try:
        relative = PurePosixPath(Path(file).relative_to(folder).as_posix())
    except ValueError:
        return upload.spec_path
    if str(relative) == PurePosixPath(upload.spec_path).name:
        return upload.spec_path
    return str(PurePosixPath(upload.spec_path).parent / relative)


def _local(backend: object) -> bool:
    """The backend's engine runs on this machine, so a host path can be resolved here."""
    url = getattr(backend, "url", None)
    return isinstance(url, str) and is_local_engine(url)


def _write_files(folder: Path, files: dict[str, str]) -> None:
    """The upload's files under `folder`; a name that cannot be written is a UsageError naming it."""
    for relative, text in files.items():
        target = folder / relative
        try:
            if not target.resolve().is_relative_to(folder.resolve()):
                raise UsageError(f"project file {_shown(relative)}: must be inside the project folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:  # checked uploads never get here; stored ones from older daemons may
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid name or text"
            raise UsageError(f"project file {_shown(relative)} cannot be unpacked: {reason}") from None


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
    """Uploads are immutable by hash, so what is made from one (project, plan) is made once.

    `host_folders` is the admin's allowed_host_folders (read from daemon.yaml beside `root` when not given)."""

    def __init__(self, sessions: sessionmaker[Session], root: Path, host_folders: HostFolders | None = None) -> None:
        self.sessions = sessions
        self.root = root
        home = root.parent
        self.host_folders = host_folders or load_host_folders(home / "daemon.yaml", home)
        self._uploads: _Memo[Upload] = _Memo()
        self._projects: _Memo[Project] = _Memo()
        self._plans: _Memo[BuildPlan] = _Memo()
        for pattern in _LEFTOVERS:  # a daemon killed mid-unpack: nothing else uses them (one daemon per home)
            for leftover in root.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

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
                raise LockMissing(
                    f"the daemon has no stored project {digest[:12]}", hint="run `devenv up` from the project folder"
                )
            return Upload(spec_path=row.spec_path, files=dict(row.files))

    def unpack(self, upload: Upload) -> Path:
        """The upload's files in a folder of the daemon's own (written once per content hash); on any
        failure nothing is left behind."""
        folder = self.root / upload.hash
        if folder.is_dir():
            return folder
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".unpack-"))
        try:
            _write_files(staging, upload.files)
            try:
                os.rename(staging, folder)
            except OSError:  # another thread unpacked the same upload first
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    def open(self, upload: Upload) -> Project:
        """The project, validated: SpecInvalid names the person's file, line and field; a host folder it
        names must be one the admin allows."""
        return self._projects.get_or_make(upload.hash, lambda: self._open(upload))

    def _open(self, upload: Upload) -> Project:
        folder = self.unpack(upload)
        spec_name = PurePosixPath(upload.spec_path).name
        try:
            project = open_project(folder / spec_name)
        except SpecInvalid as invalid:
            raise SpecInvalid(
                [dataclasses.replace(issue, file=_as_sent(issue.file, folder, upload)) for issue in invalid.issues]
            ) from None
        self._check_host_folders(upload, project.spec, real=False)
        return project

    def check_host_folders(self, upload: Upload, backend: object) -> None:
        """At `up`, once the backend is known: the host folders the spec names, resolved (symlinks) when its
        engine is on this machine. SpecInvalid (422) naming data.remote and the fix."""
        self._check_host_folders(upload, self.open(upload).spec, real=_local(backend))

    def data_binds(self, spec: Spec | None, backend: object) -> dict[str, str]:
        """Host folder -> where it appears in the workspace (a DVC directory remote, at its own path), checked
        again right before a container is made: resolved on this machine when the engine is local."""
        if spec is None or spec.data is None or not spec.data.remote_is_path:
            return {}
        remote = spec.data.remote
        real = _local(backend)
        refused = self.host_folders.refusal(remote, real=real)
        if refused is not None:
            raise SpecInvalid([SpecIssue(SPEC_FILENAME, None, None, "data.remote", *refused)])
        source = os.path.realpath(remote) if real else normal_path(remote)
        return {source: normal_path(remote)}

    def _check_host_folders(self, upload: Upload, spec: Spec, *, real: bool) -> None:
        if spec.data is None or not spec.data.remote_is_path:
            return
        refused = self.host_folders.refusal(spec.data.remote, real=real)
        if refused is not None:
            text = upload.files[PurePosixPath(upload.spec_path).name]
            raise SpecInvalid([issue_at(text, upload.spec_path, ("data", "remote"), *refused)])

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

    def resolve_lock(self, upload: Upload, lock: Callable[[Project], object]) -> Upload:
        """The upload with the devenv.lock that `lock` writes, resolved in a private copy.

        The content-addressed folders are never written after unpacking, so locking works on a copy.
        """
        spec_name = self.open(upload).spec_path.name  # validates first, with the person's file names
        folder = Path(tempfile.mkdtemp(dir=self.root, prefix=".lock-"))
        try:
            _write_files(folder, upload.files)
            lock(open_project(folder / spec_name))
            lock_text = (folder / LOCK_FILENAME).read_text(encoding="utf-8")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return Upload(spec_path=upload.spec_path, files={**upload.files, LOCK_FILENAME: lock_text})
