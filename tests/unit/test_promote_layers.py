"""The layers devenv writes for a production image: the same bytes for the same commit, whiteouts
named as OCI says, the code of the commit (never the working tree), and the data hash at it."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from devenv.promote.layers import SBOM_PATH, code_layer, whiteout_layer
from devenv.versioning.commit import commit_data_hash, git_commit, read_commit, source_url, write_archive
from devenv.versioning.facts import data_hash, data_outs
from harness.git_server import git

DVC_FILE = "outs:\n- md5: 83a284450220f9bdec5f5a32262d91a9\n  size: 9000\n  path: train.csv\n"


def members(layer: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer)) as archive:
        return archive.getmembers()


def repo(folder: Path) -> str:
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "app.py").write_text("print('hi')\n")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o755)
    (folder / "data").mkdir()
    (folder / "data" / "train.csv.dvc").write_text(DVC_FILE)
    git(folder, "init", "--quiet", "--initial-branch=main")
    git(folder, "remote", "add", "origin", "https://bob:t0ken@git.example.com/team/app.git")
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "-m", "first")
    return git(folder, "rev-parse", "HEAD")


def archive(root: Path, commit: str) -> io.BytesIO:
    """git archive's tar of `commit`, as the client uploads it (git writes to a real file)."""
    with tempfile.TemporaryFile() as sink:
        write_archive(root, commit, sink)
        sink.seek(0)
        return io.BytesIO(sink.read())


def test_the_code_layer_is_the_commit_byte_for_byte_and_not_the_working_tree(tmp_path: Path) -> None:
    commit = repo(tmp_path / "r")
    root, found, when, dirty = git_commit(tmp_path / "r" / "pkg")
    assert (root, found, dirty) == (tmp_path / "r", commit, False)
    (tmp_path / "r" / "pkg" / "app.py").write_text("print('edited')\n")
    assert git_commit(tmp_path / "r")[3] is True
    first = code_layer(archive(root, commit), mtime=when, extra={SBOM_PATH: b"{}"})
    assert code_layer(archive(root, commit), mtime=when, extra={SBOM_PATH: b"{}"}) == first
    entries = {info.name: info for info in members(first)}
    names = list(entries)
    assert names == sorted(names) and "app/pkg/app.py" in names and SBOM_PATH in names
    assert all(info.mtime == when and info.uid == 0 and info.uname == "" for info in entries.values())
    assert entries["app/run.sh"].mode == 0o755 and entries["app/pkg/app.py"].mode == 0o644
    with tarfile.open(fileobj=io.BytesIO(first)) as layer:
        handle = layer.extractfile("app/pkg/app.py")
        assert handle is not None and handle.read() == b"print('hi')\n"  # the commit's, not the edit


def test_whiteouts_name_each_removed_path_in_its_folder() -> None:
    layer = whiteout_layer(["/usr/sbin/sshd", "/etc/ssh/", "/top"], mtime=0)
    names = [info.name for info in members(layer) if info.isfile()]
    assert names == [".wh.top", "etc/.wh.ssh", "usr/sbin/.wh.sshd"]
    assert whiteout_layer(["/top", "/etc/ssh", "/usr/sbin/sshd"], mtime=0) == layer  # order does not matter


def test_the_data_hash_is_computed_at_the_commit_and_the_source_has_no_credentials(tmp_path: Path) -> None:
    commit = repo(tmp_path / "r")
    expected = data_hash(data_outs({"data/train.csv.dvc": DVC_FILE}))
    assert expected and commit_data_hash(tmp_path / "r", commit) == expected
    assert source_url(tmp_path / "r") == "https://git.example.com/team/app.git"


def test_the_facts_name_a_dirty_tree_and_allow_dirty_packages_it(tmp_path: Path) -> None:
    commit = repo(tmp_path / "r")
    (tmp_path / "r" / "pkg" / "app.py").write_text("print('edited')\n")
    facts, root = read_commit(tmp_path / "r" / "pkg")
    assert facts.commit == commit and facts.dirty and "without them" in facts.notes[0]
    assert facts.source == "https://git.example.com/team/app.git" and facts.data_hash
    dirty, _ = read_commit(tmp_path / "r", allow_dirty=True)
    assert dirty.commit != commit and dirty.when == facts.when and "--allow-dirty" in dirty.notes[0]
    layer = code_layer(archive(root, dirty.commit), mtime=0, extra={})
    with tarfile.open(fileobj=io.BytesIO(layer)) as packaged:
        handle = packaged.extractfile("app/pkg/app.py")
        assert handle is not None and handle.read() == b"print('edited')\n"
