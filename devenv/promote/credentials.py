"""The person's registry login, read on their machine as `docker push` reads it, for `devenv promote --to`.

Why the client reads it: the daemon pushes, but with the login of the person who asked, sent with that
one request and never kept; the daemon never falls back to its own user's docker config (a member of
a shared daemon must not push as its owner). Read: $DOCKER_CONFIG/config.json (default ~/.docker): a
credential helper for the registry (`credHelpers`, else `credsStore`), else `auths`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from devenv.errors import UsageError

DOCKER_HUB = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 30


def registry_of(reference: str) -> str:
    """The registry host of an image reference, as Docker reads it (no dot, colon or localhost: Docker Hub)."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    folder = env.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(folder) / "config.json"


def registry_login(reference: str, config: Path | None = None) -> dict[str, str] | None:
    """The login for `reference`'s registry (serveraddress, username and password or identitytoken), or None
    when the config has none; a config that cannot be read is named."""
    path = config or config_path()
    registry = registry_of(reference)
    if not path.is_file():
        return None
    try:
        loaded: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: not readable as JSON ({error})", hint="fix it, or `docker login` again") from None
    if not isinstance(loaded, dict):
        return None
    helper = (loaded.get("credHelpers") or {}).get(registry) or loaded.get("credsStore")
    if isinstance(helper, str) and helper:
        found = _from_helper(helper, registry)
        if found is not None:
            return found
    for key, entry in (loaded.get("auths") or {}).items():
        if _host(key) == _host(registry) and isinstance(entry, dict):
            return _from_entry(entry, registry, path)
    return None


def _host(address: str) -> str:
    """`https://host:5000/v1/` and `host:5000` name the same registry."""
    bare = address.split("://", 1)[-1]
    return bare.split("/", 1)[0].lower()


def _from_entry(entry: dict[str, Any], registry: str, path: Path) -> dict[str, str] | None:
    if entry.get("identitytoken"):
        return {"serveraddress": registry, "identitytoken": str(entry["identitytoken"])}
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(
                f"{path}: the login for {registry} is not base64 of user:password", hint="`docker login` again"
            ) from None
        return {"serveraddress": registry, "username": username, "password": password}
    if entry.get("username") and entry.get("password"):
        return {"serveraddress": registry, "username": str(entry["username"]), "password": str(entry["password"])}
    return None


def _from_helper(helper: str, registry: str) -> dict[str, str] | None:
    """`docker-credential-HELPER get`, as Docker runs it; None when it has nothing for the registry."""
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=registry,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        return None
    username, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
    if not secret:
        return None
    if username == "<token>":
        return {"serveraddress": registry, "identitytoken": secret}
    return {"serveraddress": registry, "username": username, "password": secret}
