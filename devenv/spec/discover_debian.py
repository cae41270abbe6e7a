"""The Debian packages some PyPI packages need at import, added to apt: when the requirements install one.

PyPI's opencv-python wheels dlopen the X11/GL and GLib libraries a desktop has (`import cv2` fails with
`libGL.so.1`, `libgthread-2.0.so.0`, `libxcb.so.1`); GitPython runs the git program (`import git` fails
without it). The slim bases lack them, so init adds them to apt:.
"""

from __future__ import annotations

import re

from devenv.spec.discover_model import Found, read_project_file

# PyPI names whose wheels dlopen libGL and GLib (the -headless builds do not), and packages that pull them in
OPENCV_GUI = frozenset({"opencv-python", "opencv-contrib-python", "ultralytics"})
OPENCV_APT = ("libgl1", "libglib2.0-0")  # libgl1 pulls libxcb1 on bookworm (libglx0 -> libx11-6 -> libxcb1)
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The normalized distribution name a requirement line starts with (None for options and URLs)."""
    match = _NAME.match(line.split("#", 1)[0])
    if match is None or line.lstrip().startswith("-") or "://" in line.split(";", 1)[0].split("@", 1)[0]:
        return None
    return _normal(match[1])


GITPYTHON_APT = ("git",)


def _required(found: Found, wanted: frozenset[str]) -> dict[str, str]:
    """Which of `wanted` the requirements (any source) install: name -> the file naming it first."""
    names: dict[str, str] = {}
    for line, source in found.requirement_lines:
        if (name := requirement_name(line)) in wanted:
            names.setdefault(name, source)
    for file in found.requirement_files:
        for line in (read_project_file(found, file) or "").splitlines():
            if (name := requirement_name(line)) in wanted:
                names.setdefault(name, file)
    return names


def _add(found: Found, names: dict[str, str], packages: tuple[str, ...], why: str) -> None:
    added = [package for package in packages if package not in found.apt]
    if not names or not added:
        return
    name, source = next(iter(names.items()))
    for package in added:
        found.apt[package] = source
    found.note(source, f"apt {', '.join(added)} added for {name} in {source}: {why}")


def system_packages(found: Found) -> None:
    """libGL and GLib in apt when the requirements install a GUI build of OpenCV; git when they install GitPython."""
    opencv = _required(found, OPENCV_GUI)
    its = "its opencv-python" if next(iter(opencv), None) == "ultralytics" else "it"
    _add(
        found,
        opencv,
        OPENCV_APT,
        f"{its} loads libGL, libxcb and GLib (`import cv2` fails without them; the "
        "-headless builds of OpenCV do not need them)",
    )
    _add(
        found,
        _required(found, frozenset({"gitpython"})),
        GITPYTHON_APT,
        "it runs the git program (`import git` fails without it)",
    )
