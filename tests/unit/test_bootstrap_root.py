"""The parts of a reproducible bootstrap that need no debootstrap: the epoch, /etc/shadow, dpkg's status."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devenv.build.bootstrap import clamp_shadow, installed_packages, source_epoch
from devenv.errors import DevenvError

STARTED = 1_700_000_000


def _file(root: Path, name: str, mtime: int, text: str = "") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def test_the_epoch_is_the_newest_time_from_before_the_bootstrap(tmp_path: Path) -> None:
    _file(tmp_path, "usr/bin/a", 1_600_000_000)
    _file(tmp_path, "usr/lib/b", 1_650_000_000)  # the newest packaged file
    _file(tmp_path, "etc/written-while-installing", STARTED + 30)
    os.symlink("a", tmp_path / "usr/bin/link")
    os.utime(tmp_path / "usr/bin/link", (STARTED + 5, STARTED + 5), follow_symlinks=False)
    for folder in ("usr/bin", "usr/lib", "usr", "etc"):
        os.utime(tmp_path / folder, (STARTED + 1, STARTED + 1))
    assert source_epoch(tmp_path, STARTED) == 1_650_000_000


def test_a_root_with_nothing_older_than_the_bootstrap_is_an_error(tmp_path: Path) -> None:
    _file(tmp_path, "new", STARTED + 1)
    with pytest.raises(DevenvError) as failure:
        source_epoch(tmp_path, STARTED)
    assert "clock" in (failure.value.hint or "")


def test_shadow_last_change_days_are_clamped_to_the_epoch(tmp_path: Path) -> None:
    epoch = 19_000 * 86400 + 500
    shadow = _file(tmp_path, "etc/shadow", 0, "root:*:19500:0:99999:7:::\ndev:!:18000:0:99999:7:::\nx:*::0::::\n")
    clamp_shadow(tmp_path, epoch)
    assert shadow.read_text() == "root:*:19000:0:99999:7:::\ndev:!:18000:0:99999:7:::\nx:*::0::::\n"


def test_installed_packages_come_from_dpkg_status(tmp_path: Path) -> None:
    _file(
        tmp_path,
        "var/lib/dpkg/status",
        0,
        (
            "Package: tini\nStatus: install ok installed\nVersion: 0.19.0-1\nDescription: init\n multi-line\n\n"
            "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n"
            "Package: python3.11\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.11.2-6+deb12u6\n"
        ),
    )
    assert installed_packages(tmp_path) == {"tini": "0.19.0-1", "python3.11": "3.11.2-6+deb12u6"}
