"""Which devenv this is, down to its files: a CLI and the daemon it started on its own must be the same code
(a newer CLI sends fields and calls routes an older daemon does not know), and the version number alone does
not change between two commits of a development install."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from devenv import __version__

PACKAGE = Path(__file__).resolve().parent
AUTOSTARTED_ENV = "DEVENV_AUTOSTARTED"  # set by the CLI for a daemon it starts on its own


@functools.cache
def build_id() -> str:
    """The version and a digest of every Python file of the package as installed (name, size, change time):
    a stat of ~220 files, about a millisecond; an upgrade or an edit gives another."""
    digest = hashlib.sha256()
    for folder, folders, files in os.walk(PACKAGE):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                stat = os.stat(path)
                digest.update(f"{os.path.relpath(path, PACKAGE)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"{__version__}+{digest.hexdigest()[:12]}"
