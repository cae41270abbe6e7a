"""Placing an uploaded project folder inside a workspace, and the checks every archive passes.

Why one self-contained file: the daemon validates each upload with `member_problem` as it receives it, and
the same source runs inside the workspace (`python3 -c`, standard library only) to place or sync the files,
refusing bad members again there. Inside, it reads the archive as root, then a child drops to dev before it
writes a byte: nothing lands outside what dev could write anyway, every file is dev's with a normal mode.

Run inside as `python3 -c SOURCE JOB.json`; the job says {"mode": "first"|"sync", "folder", "parts",
"base", "new", "force", "dry_run"}; the last line printed is the JSON result.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import sys
import tarfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

MAX_NAME = 4096
CHUNK = 1 << 20
TEMP_PREFIX = ".devenv-code-"


def name_problem(name: str) -> str | None:
    """Why a member name may not be placed (None: it may): relative, normalized, printable."""
    if not name or len(name) > MAX_NAME:
        return "an empty or over-long name"
    if any(char in name for char in "\x00\n\r"):
        return "a NUL or newline in its name"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' in its path"
    if any(part in ("", ".") for part in parts):
        return "a path that is not normalized"
    return None


def member_problem(member: tarfile.TarInfo, links: set[str]) -> str | None:
    """Why an archive member is refused (None: it is fine). `links`: the symlinks seen so far in the
    archive, which no later member may go through (it would land where the link points)."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    problem = name_problem(name)
    if problem is not None:
        return problem
    if not (member.isfile() or member.isdir() or member.issym()):
        return "not a file, folder or symlink (a hard link, device or pipe)"
    if member.mode & 0o7000:
        return "a setuid, setgid or sticky bit"
    parts = name.split("/")
    if any("/".join(parts[:index]) in links for index in range(1, len(parts) + 1)):
        return "a path through (or over) a symlink of the archive"
    if member.issym():
        target = member.linkname
        if not target or target.startswith("/") or any(char in target for char in "\x00\n\r"):
            return "a symlink with an absolute or empty target"
        if posixpath.normpath(posixpath.join(posixpath.dirname(name), target)).split("/")[0] == "..":
            return "a symlink leading out of the folder"
        links.add(name)
    return None


def entry_hash(data_hash: str, executable: bool) -> str:
    """A manifest entry: the content's sha256, with '+x' for an executable (a chmod is a change too)."""
    return data_hash + ("+x" if executable else "")


def link_hash(target: str) -> str:
    return "link:" + hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()


def file_hash(path: str) -> str | None:
    """The manifest entry of what is at `path` now (not following a last symlink); None when nothing is."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return link_hash(os.readlink(path))
    if not stat.S_ISREG(info.st_mode):
        return "other"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return entry_hash(digest.hexdigest(), bool(info.st_mode & 0o100))


def plan(
    base: dict[str, str], new: dict[str, str], current: dict[str, str | None], force: bool = False
) -> dict[str, list[Any]]:
    """The three-way compare. `base`: what was placed last; `new`: the upload; `current`: what the workspace
    holds now (only paths the upload changes need be there). A path the upload changes is written (or
    deleted) when the workspace still holds what was placed; when the workspace changed it too, it is a
    conflict (overwritten with `force`). Paths the upload leaves alone keep the workspace's edits."""
    write, delete, conflicts = [], [], []
    for path in sorted(set(base) | set(new)):
        before, after = base.get(path), new.get(path)
        if before == after:
            continue
        now = current.get(path)
        if now == after:
            continue  # already what the upload holds
        if now != before and not force:
            what = (
                "deleted in the workspace"
                if now is None
                else "added in the workspace"
                if before is None
                else "changed in the workspace"
            )
            conflicts.append([path, what + (", deleted locally" if after is None else ", changed locally")])
        elif after is None:
            if now is not None:
                delete.append(path)
        else:
            write.append(path)
    return {"write": write, "delete": delete, "conflicts": conflicts}


def _inside(root: str, path: str) -> bool:
    parent = os.path.realpath(os.path.dirname(path))
    return parent == root or parent.startswith(root + "/")


def _chained(paths: Iterable[str]) -> IO[bytes]:
    """The parts of an archive, read as one stream (opened now: before the child drops root)."""
    handles = [open(path, "rb") for path in paths]  # noqa: SIM115 - closed by the reader's end

    class Chain:
        def read(self, size: int = -1) -> bytes:
            out = b""
            while handles and (size < 0 or len(out) < size):
                chunk = handles[0].read(size - len(out) if size >= 0 else -1)
                if not chunk:
                    handles.pop(0).close()
                    continue
                out += chunk
            return out

    return Chain()  # type: ignore[return-value]  # tarfile's stream mode ("r|") only calls read()


def _members(stream: IO[bytes]) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    links: set[str] = set()
    seen: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            problem = member_problem(member, links)
            name = member.name.rstrip("/")
            if problem is None and name in seen:
                problem = "a name that comes twice"
            if problem is not None:
                raise ValueError(f"refused {name[:200]!r}: {problem}")
            seen.add(name)
            yield archive, member


class _Writer:
    """Writes members under `root`: each folder made and checked once (it must not lead out through a
    symlink); `fresh`: a new folder of our own, written in place, else each file goes in by a rename."""

    def __init__(self, root: str, fresh: bool) -> None:
        self.root, self.fresh = root, fresh
        self.checked: set[str] = set()

    def _folder(self, path: str) -> str:
        parent = os.path.dirname(path)
        if parent not in self.checked:
            os.makedirs(parent, exist_ok=True)
            if not _inside(self.root, os.path.join(parent, "x")):
                raise ValueError(f"refused {path!r}: its folder in the workspace leads out through a symlink")
            self.checked.add(parent)
        return parent

    def write(self, archive: tarfile.TarFile, member: tarfile.TarInfo, expected: str | None) -> None:
        path = os.path.join(self.root, member.name)
        parent = self._folder(path)
        staged = f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(path)}"[:250]
        temp = path if self.fresh else os.path.join(parent, staged)
        if member.issym():
            os.symlink(member.linkname, temp)
            got = link_hash(member.linkname)
        else:
            source = archive.extractfile(member)
            assert source is not None
            digest = hashlib.sha256()
            mode = 0o755 if member.mode & 0o111 else 0o644
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fchmod(fd, mode)  # whatever the umask
                os.utime(fd, (member.mtime, member.mtime))
            got = entry_hash(digest.hexdigest(), mode == 0o755)
        if expected is not None and got != expected:
            os.unlink(temp)
            raise ValueError(f"{member.name!r} does not match the upload's manifest")
        if temp != path:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            os.replace(temp, path)


def _first(job: dict[str, Any]) -> dict[str, Any]:
    """The whole folder into a temporary one, then renamed into place: a failure leaves nothing."""
    home, folder = job["home"], job["folder"]
    target = os.path.join(home, folder)
    if os.path.lexists(target):
        return {"status": "present", "folder": target}
    temp = os.path.join(home, f"{TEMP_PREFIX}{folder}")
    shutil.rmtree(temp, ignore_errors=True)
    os.makedirs(temp)
    root = os.path.realpath(temp)
    files = size = 0
    writer = _Writer(root, fresh=True)
    try:
        for archive, member in _members(job["stream"]):
            if member.isdir():
                os.makedirs(os.path.join(root, member.name.rstrip("/")), exist_ok=True)
                continue
            writer.write(archive, member, job["new"].get(member.name))
            files, size = files + 1, size + member.size
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return {"status": "placed", "folder": target, "files": files, "bytes": size}


def _sync(job: dict[str, Any]) -> dict[str, Any]:
    root = os.path.realpath(os.path.join(job["home"], job["folder"]))
    if not os.path.isdir(root):
        return {"status": "missing", "folder": root}
    base, new = job["base"], job["new"]
    changed = [path for path in set(base) | set(new) if base.get(path) != new.get(path)]
    current = {path: file_hash(os.path.join(root, path)) for path in changed}
    steps = plan(base, new, current, bool(job.get("force")))
    result = {"status": "planned", "folder": root, **steps}
    if steps["conflicts"] or job.get("dry_run"):
        return result
    wanted = set(steps["write"])
    if wanted:
        writer = _Writer(root, fresh=False)
        for archive, member in _members(job["stream"]):
            if member.name in wanted:
                writer.write(archive, member, new.get(member.name))
    for path in steps["delete"]:
        full = os.path.join(root, path)
        if not _inside(root, full):
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        elif os.path.lexists(full):
            os.unlink(full)
        parent = os.path.dirname(full)
        while parent != root and os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)
            parent = os.path.dirname(parent)
    result["status"] = "synced"
    return result


def _as_dev(job: dict[str, Any]) -> None:
    """In the child: become dev (its uid and groups) before anything is written."""
    import pwd

    user = pwd.getpwnam(job.get("user", "dev"))
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.umask(0o022)


def main(argv: list[str]) -> int:
    with open(argv[1]) as handle:
        job = json.load(handle)
    job["stream"] = _chained(job["parts"])  # opened as root: the parts are root's
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            if os.geteuid() == 0:
                _as_dev(job)
            result = _first(job) if job["mode"] == "first" else _sync(job)
            code = 0
        except (ValueError, OSError, KeyError, tarfile.TarError) as error:
            result, code = {"status": "failed", "message": str(error)[:2000]}, 3
        os.write(write, json.dumps(result).encode())
        os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, CHUNK):
        chunks.append(chunk)
    _pid, status = os.waitpid(pid, 0)
    shutil.rmtree(os.path.dirname(argv[1]), ignore_errors=True)  # the parts and the job, root's
    print(b"".join(chunks).decode() or json.dumps({"status": "failed", "message": "the placing process died"}))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
