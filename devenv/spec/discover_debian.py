"""The Debian libraries OpenCV's PyPI wheels need, added to apt: when the requirements install one.

PyPI's opencv-python wheels dlopen the X11/GL and GLib libraries a desktop has (`import cv2` fails with
`libGL.so.1`, `libgthread-2.0.so.0`, `libxcb.so.1`); the slim bases lack them, so init adds them to apt:.
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


def opencv_libraries(found: Found) -> None:
    """libGL and GLib in apt: when the requirements (any source) install a GUI build of OpenCV."""
    names: dict[str, str] = {}
    for line, source in found.requirement_lines:
        if (name := requirement_name(line)) in OPENCV_GUI:
            names.setdefault(name, source)
    for file in found.requirement_files:
        for line in (read_project_file(found, file) or "").splitlines():
            if (name := requirement_name(line)) in OPENCV_GUI:
                names.setdefault(name, file)
    if not names:
        return
    added = [package for package in OPENCV_APT if package not in found.apt]
    if not added:
        return
    name, source = next(iter(names.items()))
    why = "its opencv-python" if name == "ultralytics" else "it"
    for package in added:
        found.apt[package] = source
    found.note(
        source,
        f"apt {', '.join(added)} added for {name} in {source}: {why} loads libGL, libxcb and GLib "
        "(`import cv2` fails without them; the -headless builds of OpenCV do not need them)",
    )
