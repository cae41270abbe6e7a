"""The daemon's web key and what is derived from it: each workspace's JupyterLab secret.

The secret is never stored by the daemon: it is recomputed from the key, which lives in one file,
mode 0600, beside the SSH CA's keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def load_or_make_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        os.replace(staging, path)
    return path.read_bytes()


def jupyter_secret(key: bytes, workspace: str) -> str:
    """("v2": the first derivation was readable by dev inside the workspace; this one never is.)"""
    return hmac.new(key, f"jupyter\0v2\0{workspace}".encode(), hashlib.sha256).hexdigest()
