"""devenv.build.reproducible: a layer normalised is the same bytes whatever order, times and owner names its
entries came with; numeric owners, modes, links and extended attributes are kept; build-time records are left out."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from devenv.build.reproducible import is_volatile, normal_config, normalise_layer

EPOCH = 1_700_000_000

FILES = {  # name -> (data, mode, uid, gid)
    "opt/venv/bin/tool": (b"#!/bin/sh\n", 0o755, 1000, 1000),
    "opt/venv/lib/site.py": (b"print('x')\n", 0o644, 1000, 1000),
    "etc/devenv.conf": (b"a = 1\n", 0o600, 0, 42),
}


def _layer(path: Path, *, order: list[str], mtime: int, uname: str, extra: dict[str, bytes] | None = None) -> Path:
    """A layer tar as a build leaves it: entries in `order`, build-time mtimes, owner names, atime/ctime."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name in order:
            if name == "opt/venv/bin/link":
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, "tool"
            elif name == "opt/venv/bin/hard":
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.LNKTYPE, "opt/venv/bin/tool"
            elif name in FILES:
                data, mode, uid, gid = FILES[name]
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
                if name.endswith("tool"):
                    info.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x02"}
                info.pax_headers = {**info.pax_headers, "atime": str(mtime + 7), "ctime": str(mtime + 9)}
            else:
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            info.mtime, info.uname, info.gname = mtime, uname, uname
            archive.addfile(info, io.BytesIO(FILES[name][0]) if name in FILES and info.isreg() else None)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            archive.addfile(info, io.BytesIO(data))
    return path


NAMES = [
    "opt",
    "opt/venv",
    "opt/venv/bin",
    "opt/venv/bin/tool",
    "opt/venv/bin/hard",
    "opt/venv/bin/link",
    "opt/venv/lib",
    "opt/venv/lib/site.py",
    "etc",
    "etc/devenv.conf",
]


def _normalised(source: Path) -> bytes:
    out = io.BytesIO()
    diff_id, size = normalise_layer(source, out, epoch=EPOCH)
    data = out.getvalue()
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    return data


def test_two_builds_of_one_layer_give_the_same_bytes(tmp_path: Path) -> None:
    first = _layer(
        tmp_path / "a.tar",
        order=NAMES,
        mtime=EPOCH + 100,
        uname="dev",
        extra={"var/log/dpkg.log": b"2026-12-06 install\n", "tmp/tmpab12_kernels/x": b"1"},
    )
    second = _layer(
        tmp_path / "b.tar",
        order=list(reversed(NAMES)),
        mtime=EPOCH + 5000,
        uname="root",
        extra={"var/log/dpkg.log": b"2026-12-07 install\n", "tmp/tmpzz99_kernels/x": b"2"},
    )
    assert first.read_bytes() != second.read_bytes()
    assert _normalised(first) == _normalised(second)


def test_entries_sorted_times_clamped_names_dropped_owners_modes_links_and_xattrs_kept(tmp_path: Path) -> None:
    layer = _layer(
        tmp_path / "a.tar",
        order=list(reversed(NAMES)),
        mtime=EPOCH + 100,
        uname="dev",
        extra={"var/log/apt/history.log": b"x", "var/lib/dpkg/status-old": b"y"},
    )
    with tarfile.open(fileobj=io.BytesIO(_normalised(layer))) as archive:
        members = archive.getmembers()
        entries = {member.name: member for member in members}
        names = [member.name for member in members]
        assert names == sorted(NAMES)  # the volatile records are gone
        assert all(m.mtime == EPOCH and m.uname == "" and m.gname == "" for m in members)
        assert all("atime" not in m.pax_headers and "ctime" not in m.pax_headers for m in members)
        tool = entries["opt/venv/bin/tool"]
        assert (tool.uid, tool.gid, tool.mode) == (1000, 1000, 0o755)
        assert tool.pax_headers["SCHILY.xattr.security.capability"] == "\x01\x02"
        conf = entries["etc/devenv.conf"]
        assert (conf.uid, conf.gid, conf.mode) == (0, 42, 0o600)
        assert entries["opt/venv/bin/link"].issym() and entries["opt/venv/bin/link"].linkname == "tool"
        # a hard-linked file's data goes under the first of its names: "hard" sorts before "tool"
        assert entries["opt/venv/bin/hard"].isreg() and entries["opt/venv/bin/hard"].size == len(b"#!/bin/sh\n")
        assert entries["opt/venv/bin/tool"].islnk() and tool.linkname == "opt/venv/bin/hard"
        handle = archive.extractfile("opt/venv/bin/hard")
        assert handle is not None and handle.read() == b"#!/bin/sh\n"


def test_an_older_time_becomes_the_epoch_too(tmp_path: Path) -> None:
    """A step served from the cache ran for an earlier lock, before this one's resolved_at."""
    layer = _layer(tmp_path / "a.tar", order=NAMES, mtime=EPOCH - 86400, uname="")
    with tarfile.open(fileobj=io.BytesIO(_normalised(layer))) as archive:
        assert {member.mtime for member in archive.getmembers()} == {EPOCH}


def test_volatile_paths() -> None:
    assert is_volatile("var/log/dpkg.log") and is_volatile("var/log/apt/eipp.log.xz")
    assert is_volatile("var/cache/ldconfig/aux-cache") and is_volatile("var/lib/dpkg/status-old")
    assert is_volatile("root/.cache/pip/selfcheck/x.json") and is_volatile("tmp/tmpab_kernels/kernel.json")
    assert not is_volatile("var/lib/dpkg/status") and not is_volatile("tmp") and not is_volatile("var/log")
    assert not is_volatile("opt/venv/lib/python3.11/site-packages/rich/__init__.py")


def test_the_config_has_fixed_times_and_no_build_containers() -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-12-06T14:00:01.123Z",
        "container": "abc",
        "container_config": {"Hostname": "abc"},
        "config": {"Env": ["A=1"], "Image": "sha256:parent", "Labels": {"x": "y"}},
        "history": [
            {"created": "2026-12-06T14:00:00Z", "created_by": "RUN x"},
            {"created": "2026-12-06T14:00:01Z", "created_by": "ENV A=1", "empty_layer": True},
        ],
        "rootfs": {"type": "layers", "diff_ids": ["sha256:old"]},
    }
    data = json.loads(normal_config(config, epoch=EPOCH, diff_ids=["sha256:new"]))
    assert data["created"] == "2023-11-14T22:13:20Z" and "container" not in data and "container_config" not in data
    assert data["config"] == {"Env": ["A=1"], "Image": "", "Labels": {"x": "y"}}
    assert [entry["created"] for entry in data["history"]] == ["2023-11-14T22:13:20Z"] * 2
    assert data["history"][1]["empty_layer"] is True and data["rootfs"]["diff_ids"] == ["sha256:new"]
    labelled = json.loads(normal_config(config, epoch=EPOCH, diff_ids=["sha256:new"], labels={"devenv.n": "a"}))
    assert labelled["config"]["Labels"] == {"x": "y", "devenv.n": "a"} and config["config"]["Labels"] == {"x": "y"}
