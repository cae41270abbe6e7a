"""What a wheel built here from its sdist links to beyond the manylinux set, read from its ELF files, and the
Debian package holding each library on this machine (devenv.lock.native)."""

from __future__ import annotations

import _ssl
import zipfile
from pathlib import Path

import pytest

from devenv.errors import LockError
from devenv.lock.native import host_packages, needed_libraries, wheel_needs

SSL = Path(_ssl.__file__)  # this Python's own extension: links to libssl.so.3 and libcrypto.so.3


def wheel(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "pkg-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_the_needed_names_are_read_from_the_elf_dynamic_section() -> None:
    needed = needed_libraries(SSL.read_bytes())
    assert {"libssl.so.3", "libcrypto.so.3", "libc.so.6"} <= set(needed)
    assert needed_libraries(b"#!/bin/sh\n") == [] and needed_libraries(b"\x7fELF" + b"\0" * 10) == []


def test_a_wheel_needs_what_it_neither_ships_nor_every_image_has(tmp_path: Path) -> None:
    linked = wheel(tmp_path, {"pkg/_ext.cpython-311-x86_64-linux-gnu.so": SSL.read_bytes(), "pkg/__init__.py": b""})
    assert wheel_needs(linked) == {"libssl.so.3", "libcrypto.so.3"}  # libc is in every image
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    shipped = wheel(
        bundled, {"pkg/_ext.so": SSL.read_bytes(), "pkg.libs/libssl.so.3": b"", "pkg.libs/libcrypto.so.3": b""}
    )
    assert wheel_needs(shipped) == set()  # auditwheel-style: the wheel carries them


def test_each_library_maps_to_the_runtime_package_and_an_unknown_one_stops_the_lock(tmp_path: Path) -> None:
    linked = wheel(tmp_path, {"pkg/_ext.so": SSL.read_bytes()})
    assert host_packages("pkg", linked) == {"libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3"}
    data = bytearray(SSL.read_bytes())
    at = data.find(b"libssl.so.3\0")
    data[at : at + 11] = b"libzzz.so.3"  # same length: a library no package on this machine provides
    (tmp_path / "odd").mkdir()
    odd = wheel(tmp_path / "odd", {"pkg/_ext.so": bytes(data)})
    with pytest.raises(LockError) as caught:
        host_packages("pkg", odd)
    assert "libzzz.so.3" in caught.value.message and "apt:" in (caught.value.hint or "")
