"""The project folder's way into its workspace: which files are collected, the archive checks, the
three-way compare of a sync, the store's limits, and the daemon's routes with the placing script run for real
(on a temporary home, standing in for the workspace's)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.code import place
from devenv.code.collect import collect, folder_name, ignored, too_large, write_tar
from devenv.code.manifest import BadArchive, scan
from devenv.code.store import CodeStore
from devenv.errors import BodyTooLarge, UsageError
from devenv.testing.daemon import fake_daemon, project_upload


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True, capture_output=True
    )


def _tar(collected: Any) -> bytes:
    out = io.BytesIO()
    write_tar(collected, out)
    return out.getvalue()


# -- collect -------------------------------------------------------------------------------------


def test_a_checkout_sends_tracked_and_untracked_files_minus_ignored_deleted_and_outside_links(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name, text in {
        "train.py": "t",
        "src/model.py": "m",
        "old.py": "o",
        ".gitignore": "*.log\n",
        "run.log": "ignored",
        ".devenvignore": "big/\n",
        "big/weights.bin": "w",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "one")
    (tmp_path / "old.py").unlink()  # deleted, not yet committed
    (tmp_path / "notes.md").write_text("untracked")
    (tmp_path / "inside").symlink_to("src/model.py")
    (tmp_path / "outside").symlink_to("/etc/passwd")
    got = collect(tmp_path)
    names = [entry.path for entry in got.entries]
    assert names == [".devenvignore", ".gitignore", "inside", "notes.md", "src/model.py", "train.py"]
    assert {entry.path: entry.link for entry in got.entries}["inside"] == "src/model.py"
    assert any("outside" in note and "leading out" in note for note in got.notes)
    assert got.git is not None and got.git["branch"] == "main" and got.git["commit"] and got.git["edited"] == 4


def test_a_subfolder_of_a_checkout_sends_its_own_files_only(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "a.py").write_text("a")
    (tmp_path / "other.py").write_text("o")
    _git(tmp_path, "init", "-q")
    assert [entry.path for entry in collect(tmp_path / "proj").entries] == ["a.py"]


def test_outside_git_every_file_minus_the_default_ignore_list(tmp_path: Path) -> None:
    for name in (
        ".venv/lib/x.py",
        "pkg/__pycache__/m.cpython-311.pyc",
        "node_modules/z.js",
        ".git/HEAD",
        "main.py",
        "data/a.csv",
        "pkg/m.pyc",
        ".DS_Store",
        "skip/me.txt",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".devenvignore").write_text("# comment\nskip/\n")
    (tmp_path / "abs").symlink_to(tmp_path / "main.py")  # absolute, but inside: kept, made relative
    got = collect(tmp_path)
    assert [entry.path for entry in got.entries] == [".devenvignore", "abs", "data/a.csv", "main.py"]
    assert got.entries[1].link == "main.py" and got.git is None


def test_ignore_patterns_and_folder_names() -> None:
    assert ignored("a/b/c.pyc", ["*.pyc"]) and ignored("data/x/y", ["data/"]) and not ignored("data", ["data/"])
    assert ignored("a/b/c", ["a/b"]) and not ignored("x/a/b", ["a/b"]) and not ignored("a.py", ["*.pyc"])
    assert folder_name(Path("/x/my proj!")) == "my-proj" and folder_name(Path("/x/..")) == "project"


def test_the_archive_is_deterministic_and_its_manifest_matches(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "link").symlink_to("a.txt")
    first, second = _tar(collect(tmp_path)), _tar(collect(tmp_path))
    assert first == second
    manifest = scan(io.BytesIO(first))
    assert manifest.files == 3 and manifest.bytes == len("hello") + len("#!/bin/sh\n")
    assert manifest.entries["run.sh"].endswith("+x") and manifest.entries["link"].startswith("link:")


def test_too_large_names_the_largest_files_and_how_to_leave_them_out(tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text("x")
    (tmp_path / "model.ckpt").write_bytes(b"0" * 5000)
    error = too_large(collect(tmp_path), 1000, "over the daemon's limit")
    assert "model.ckpt (5.0 kB)" in error.message and ".devenvignore" in (error.hint or "")


# -- the checks every archive passes ---------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def _archive(*members: tarfile.TarInfo) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(b"") if member.isfile() else None)
    out.seek(0)
    return out


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([_member("/etc/passwd")], "absolute"),
        ([_member("a/../../x")], "'..'"),
        ([_member("a//b")], "not normalized"),
        ([_member("evil\nname")], "newline"),
        ([_member("dev", tarfile.CHRTYPE)], "device"),
        ([_member("pipe", tarfile.FIFOTYPE)], "pipe"),
        ([_member("hard", tarfile.LNKTYPE, link="a")], "hard link"),
        ([_member("suid", mode=0o4755)], "setuid"),
        ([_member("out", tarfile.SYMTYPE, link="../x")], "leading out"),
        ([_member("abs", tarfile.SYMTYPE, link="/etc")], "absolute"),
        ([_member("d", tarfile.SYMTYPE, link="."), _member("d/x")], "through"),
        ([_member("a"), _member("a")], "twice"),
    ],
)
def test_each_bad_member_kind_is_refused(members: list[tarfile.TarInfo], problem: str) -> None:
    with pytest.raises(BadArchive, match="refused") as refused:
        scan(_archive(*members))
    assert problem in refused.value.message


def test_garbage_is_refused_as_not_a_tar() -> None:
    with pytest.raises(BadArchive, match="not a tar"):
        scan(io.BytesIO(b"{}"))


# -- the three-way compare -------------------------------------------------------------------------


def test_plan_writes_what_only_the_upload_changed_and_refuses_what_both_did() -> None:
    base = {"same": "1", "local": "1", "inside": "1", "both": "1", "gone": "1", "gone-edited": "1"}
    new = {"same": "1", "local": "2", "inside": "1", "both": "2", "added": "1", "clash": "1"}
    now = {"local": "1", "both": "3", "gone": "1", "gone-edited": "9", "added": None, "clash": "7"}
    steps = place.plan(base, new, now)
    assert steps["write"] == ["added", "local"] and steps["delete"] == ["gone"]
    assert [path for path, _why in steps["conflicts"]] == ["both", "clash", "gone-edited"]
    forced = place.plan(base, new, now, force=True)
    assert forced["write"] == ["added", "both", "clash", "local"] and forced["delete"] == ["gone", "gone-edited"]
    assert not forced["conflicts"]


def _job(tmp_path: Path, tar: bytes, **fields: Any) -> dict[str, Any]:
    part = tmp_path / f"part-{len(list(tmp_path.iterdir()))}"
    part.write_bytes(tar)
    return {"home": str(tmp_path / "home"), "folder": "proj", "stream": place._chained([str(part)]), **fields}


def test_placing_then_syncing_on_a_real_folder(tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "src").mkdir(parents=True)
    home.mkdir()
    (project / "src" / "a.py").write_text("v1")
    (project / "b.py").write_text("b1")
    tar = _tar(collect(project))
    first = scan(io.BytesIO(tar)).entries
    placed = place._first(_job(tmp_path, tar, new=first))
    assert placed == {"status": "placed", "folder": str(home / "proj"), "files": 2, "bytes": 4}
    assert (home / "proj" / "src" / "a.py").read_text() == "v1"
    assert (home / "proj" / "b.py").stat().st_mode & 0o777 == 0o644
    assert place._first(_job(tmp_path, tar, new=first))["status"] == "present"  # the person's now: untouched
    (project / "src" / "a.py").write_text("v2")
    (project / "b.py").write_text("b2")
    (home / "proj" / "b.py").write_text("edited inside")
    tar2 = _tar(collect(project))
    second = scan(io.BytesIO(tar2)).entries
    refused = place._sync(_job(tmp_path, tar2, base=first, new=second))
    assert refused["conflicts"] == [["b.py", "changed in the workspace, changed locally"]]
    assert (home / "proj" / "src" / "a.py").read_text() == "v1"  # a refused sync writes nothing
    done = place._sync(_job(tmp_path, tar2, base=first, new=second, force=True))
    assert done["status"] == "synced" and done["write"] == ["b.py", "src/a.py"]
    assert (home / "proj" / "b.py").read_text() == "b2" and (home / "proj" / "src" / "a.py").read_text() == "v2"


# -- the store ---------------------------------------------------------------------------------------


def test_the_store_refuses_over_its_limit_and_bad_archives_leaving_nothing(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "code", limit=100)
    incoming = store.begin()
    with pytest.raises(BodyTooLarge, match="limit of 100 bytes"):
        incoming.write(b"x" * 101)
    incoming.discard()
    bad = CodeStore(tmp_path / "code")
    incoming = bad.begin()
    incoming.write(_archive(_member("/abs")).getvalue())
    with pytest.raises(BadArchive):
        bad.commit(incoming, "olive")
    assert list((tmp_path / "code").iterdir()) == []


def test_an_upload_is_only_its_uploaders(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "code")
    incoming = store.begin()
    incoming.write(_archive(_member("a.py")).getvalue())
    digest = store.commit(incoming, "olive")["hash"]
    store.require(digest, "olive")
    store.require(digest, "ada", admin=True)
    with pytest.raises(UsageError, match="no uploaded code"):
        store.require(digest, "mallory")
    with pytest.raises(UsageError):
        store.require("../../etc/passwd", "olive")


def test_old_uploads_are_pruned_per_person_but_never_one_a_workspace_names(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "code")
    digests = []
    for number in range(6):
        incoming = store.begin()
        incoming.write(_archive(_member(f"file{number}.py")).getvalue())
        digests.append(store.commit(incoming, "olive")["hash"])
        os.utime(store.root / f"{digests[-1]}.by", ns=(number * 10**9, number * 10**9))
        for mark in (store.root / f"{digests[-1]}.by").iterdir():
            os.utime(mark, ns=(number * 10**9, number * 10**9))
    incoming = store.begin()
    incoming.write(_archive(_member("file0.py")).getvalue())  # the same folder as olive's oldest, uploaded by ada
    assert store.commit(incoming, "ada")["hash"] == digests[0]

    deleted = store.prune("olive", referenced={digests[1]}, keep=2)
    assert sorted(deleted) == sorted(digests[2:4])  # the newest two kept, the named one kept, ada's kept
    for digest in digests[:2] + digests[4:]:
        assert store.tar(digest).is_file()
    store.require(digests[0], "ada")
    with pytest.raises(UsageError):
        store.require(digests[0], "olive")  # olive's mark is gone: ada's upload is not olive's to use
    for digest in digests[2:4]:
        assert not store.tar(digest).exists() and not (store.root / f"{digest}.json").exists()
    assert store.prune("olive", referenced=set(), keep=2) == [digests[1]]


# -- through the daemon's API, with the placing script run on a temporary home ------------------------


def _placing(backend: Any, home: Path, scratch: Path) -> Callable[[str, list[str]], Any]:
    """An exec handler that runs place.py's job as the workspace would, on `home`."""

    def handle(workspace: str, argv: list[str]) -> tuple[int, bytes, bytes] | None:
        if argv[:2] != ["python3", "-c"]:
            return None
        files = backend.files(workspace)
        job = json.loads(files[argv[3]])
        parts = []
        for index, name in enumerate(job["parts"]):
            (scratch / f"{workspace}-{index}").write_bytes(files[name])
            parts.append(str(scratch / f"{workspace}-{index}"))
        job.update(home=str(home), stream=place._chained(parts))
        result = place._first(job) if job["mode"] == "first" else place._sync(job)
        return 0, json.dumps(result).encode(), b""

    return handle


def test_up_places_the_upload_and_sync_refuses_edits_made_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVENV_MAX_CODE_BYTES", str(64 * 1024))
    home, scratch, project = tmp_path / "home", tmp_path / "scratch", tmp_path / "project"
    for folder in (home, scratch, project):
        folder.mkdir()
    fake = fake_daemon(tmp_path / "daemon")
    fake.backend.exec_handler = _placing(fake.backend, home, scratch)
    (project / "train.py").write_text("v1")
    with TestClient(fake.app) as client:
        put = client.put("/v1/code", content=_tar(collect(project)), headers=fake.headers)
        assert put.status_code == 200, put.text
        code = {"hash": put.json()["hash"], "folder": "proj", "source": {"path": str(project)}}
        upload = project_upload(tmp_path / "spec", name="coded")
        up = client.post("/v1/workspaces", json={**upload, "code": code}, headers=fake.headers)
        final = json.loads(up.text.splitlines()[-1])
        assert final["workspace"]["setup"]["code"]["folder"] == "/home/dev/proj", final
        assert final["workspace"]["setup"]["code"]["files"] == 1
        assert (home / "proj" / "train.py").read_text() == "v1"
        (home / "proj" / "train.py").write_text("edited inside")
        (project / "train.py").write_text("v2")
        put2 = client.put("/v1/code", content=_tar(collect(project)), headers=fake.headers).json()
        refused = client.post("/v1/workspaces/coded/sync", json={"hash": put2["hash"]}, headers=fake.headers)
        assert refused.status_code == 409 and refused.json()["code"] == "code_conflict"
        assert "train.py" in refused.json()["message"] and (home / "proj" / "train.py").read_text() == "edited inside"
        forced = client.post(
            "/v1/workspaces/coded/sync", json={"hash": put2["hash"], "force": True}, headers=fake.headers
        )
        assert forced.status_code == 200 and forced.json()["write"] == ["train.py"], forced.text
        assert (home / "proj" / "train.py").read_text() == "v2"
        bad = client.put("/v1/code", content=_archive(_member("../x")).getvalue(), headers=fake.headers)
        assert bad.status_code == 400 and bad.json()["code"] == "code_refused"
        big = client.put("/v1/code", content=b"0" * (65 * 1024), headers=fake.headers)
        assert big.status_code == 413
        unknown = client.post("/v1/workspaces/coded/sync", json={"hash": "0" * 64}, headers=fake.headers)
        assert unknown.status_code == 400
    assert not [name for name in os.listdir(tmp_path / "daemon" / "code") if name.startswith(".")]
    fake.daemon.scheduler.shutdown()
