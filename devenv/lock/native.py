"""The system libraries a wheel built here from its sdist links to, as Debian packages for the image.

A wheel from PyPI is manylinux: it carries what it links to beyond a small base set. One devenv builds from an
sdist (psycopg2, cx-Oracle) links to what the build found on this machine (`libpq.so.5`, installed with
libpq-dev): the image needs the package holding that library too, or the import fails there. The host built it,
so the host has the library, and dpkg names its package; the lock adds that package to the image's apt set.
"""

from __future__ import annotations

import struct
import subprocess
import zipfile
from pathlib import Path

from devenv.errors import LockError

# the manylinux set: there in every image (glibc, libgcc, libstdc++), never a package to add
ALWAYS_THERE = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libcrypt.so.1",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "libnsl.so.1",
        "libz.so.1",
        "libexpat.so.1",
        "libffi.so.8",  # the base's Python needs these (zlib1g, libexpat1, libffi8)
    }
)
_DT_NEEDED, _SHT_DYNAMIC = 1, 6


def needed_libraries(data: bytes) -> list[str]:
    """The DT_NEEDED names of a 64-bit little-endian ELF shared object; [] for anything else."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for index in range(shnum):
        start = shoff + index * shentsize
        if start + 64 > len(data):
            return []
        _name, kind, _flags, _addr, offset, size, link = struct.unpack_from("<IIQQQQI", data, start)
        sections.append((kind, offset, size, link))
    names: list[str] = []
    for kind, offset, size, link in sections:
        if kind != _SHT_DYNAMIC or link >= len(sections):
            continue
        strings = sections[link][1]
        for entry in range(offset, min(offset + size, len(data) - 15), 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                end = data.find(b"\0", strings + value)
                names.append(data[strings + value : end].decode(errors="replace"))
    return names


def wheel_needs(wheel: Path) -> set[str]:
    """The libraries the wheel's shared objects need that neither the wheel nor every image holds."""
    with zipfile.ZipFile(wheel) as archive:
        members = [info for info in archive.infolist() if ".so" in info.filename.rsplit("/", 1)[-1]]
        shipped = {info.filename.rsplit("/", 1)[-1] for info in members}
        needed: set[str] = set()
        for info in members:
            needed.update(needed_libraries(archive.read(info)))
    return {name for name in needed if name not in shipped and name not in ALWAYS_THERE}


def host_packages(package: str, wheel: Path) -> dict[str, str]:
    """library -> the Debian package holding it on this machine, for each library `wheel` needs.

    A library dpkg cannot place (another distribution, a library built by hand) stops the lock, named."""
    found: dict[str, str] = {}
    for library in sorted(wheel_needs(wheel)):
        owner = _dpkg_owner(library)
        if owner is None:
            raise LockError(
                f"{package} was built from its source here and links to {library}, which no Debian "
                "package on this machine provides, so the image would lack it",
                hint=f"add the Debian package that provides {library} under apt: in devenv.yaml, or pin "
                f"a version of {package} that publishes a wheel",
            )
        found[library] = owner
    return found


def _dpkg_owner(library: str) -> str | None:
    try:
        done = subprocess.run(
            ["dpkg-query", "-S", f"*/{library}"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    owners = []
    for line in done.stdout.splitlines():
        packages, _, path = line.partition(": ")
        if path.rsplit("/", 1)[-1] == library:
            owners += [name.strip().split(":")[0] for name in packages.split(",")]
    runtime = [name for name in owners if not name.endswith("-dev")]
    chosen = runtime or owners
    return chosen[0] if chosen else None
