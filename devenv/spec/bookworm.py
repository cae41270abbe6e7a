"""Debian bookworm names for old Ubuntu apt names that Dockerfiles and apt.txt files written for Ubuntu use.

devenv's bases are Debian bookworm; `openjdk-8-jdk` or `language-pack-ko` are not in it, and the lock then
fails on them. A small table gives the bookworm package that does the same job (each target checked with
`apt-cache policy` on bookworm); a name not in it stays as written, and the lock names it if Debian lacks it.
Both init's readers (discover_model.Found.add_apt) and the devcontainer import use it.
"""

from __future__ import annotations

import re

# old (Ubuntu or pre-bookworm Debian) name -> bookworm's
RENAMES = {
    "openjdk-8-jdk": "default-jdk-headless",
    "openjdk-11-jdk": "default-jdk-headless",
    "openjdk-8-jdk-headless": "default-jdk-headless",
    "openjdk-11-jdk-headless": "default-jdk-headless",
    "openjdk-8-jre": "default-jre-headless",
    "openjdk-11-jre": "default-jre-headless",
    "openjdk-8-jre-headless": "default-jre-headless",
    "openjdk-11-jre-headless": "default-jre-headless",
    "libgl1-mesa-glx": "libgl1",
    "python-dev": "python3-dev",
    "libpython-dev": "python3-dev",
    "libjpeg8-dev": "libjpeg-dev",
    "libjpeg-turbo8-dev": "libjpeg-dev",
    "libhdf5-serial-dev": "libhdf5-dev",
    "libmysqlclient-dev": "default-libmysqlclient-dev",
    "libjasper-dev": "libopenjp2-7-dev",
    "libssl1.1": "libssl3",
    "libffi7": "libffi8",
}
_LANGUAGE_PACK = re.compile(r"language-pack-[a-z]+(?:-base)?")


def bookworm_name(package: str) -> tuple[str, str | None]:
    """(the bookworm package to install, why it replaces `package`, or None when the name stays)."""
    if _LANGUAGE_PACK.fullmatch(package):
        return "locales", "Ubuntu's language packs are not in Debian, whose locales package provides the locales"
    if package in RENAMES:
        return RENAMES[package], f"{package} is not in Debian bookworm, the bases' distribution"
    return package, None
