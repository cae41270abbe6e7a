"""Where devenv finds its shipped files (templates, image recipes) and keeps its caches.

In a source checkout the top-level `templates/` and `images/` are used directly; an installed
wheel carries copies under `devenv/_resources/`.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    bundled = _PACKAGE_DIR / "_resources" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE_DIR.parent / name


def templates_dir() -> Path:
    return _shipped("templates")


def images_dir() -> Path:
    return _shipped("images")


def cache_dir() -> Path:
    """Downloaded wheels and debs (content-addressed) and build contexts; DEVENV_CACHE_DIR overrides."""
    override = os.environ.get("DEVENV_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir("devenv"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifact_path(folder: Path, sha256: str, filename: str) -> Path:
    """Where a downloaded or built file lives in a content-addressed cache folder."""
    return folder / sha256[:2] / sha256 / filename
