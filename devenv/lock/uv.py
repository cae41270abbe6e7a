"""The uv binary that resolves and builds Python packages (a declared dependency of devenv)."""

from __future__ import annotations

from devenv.errors import ToolMissing


def uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError as exc:  # uv is a declared dependency; this means a broken install
        raise ToolMissing("uv is not installed", hint="pip install uv") from exc
    return find_uv_bin()
