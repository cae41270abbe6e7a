"""Connecting to a Docker engine through the SDK, with its failures translated to devenv errors.

Nothing here assumes the engine is local: paths on this machine never reach the engine except
inside a build context or an import stream, so ssh:// engines work the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import docker
import docker.errors
import requests.exceptions

from devenv.errors import BackendError, EngineUnreachable


def engine_url(url: str | None = None) -> str:
    return url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_local_engine(url: str) -> bool:
    """The engine runs on this machine (a unix socket or localhost): its containers' network and its host's
    commands are within reach."""
    parts = urlsplit(url)
    return parts.scheme in ("unix", "npipe") or parts.hostname in ("127.0.0.1", "localhost", "::1")


def connect(url: str | None = None, *, timeout: int = 600) -> docker.DockerClient:
    """A client for the engine at `url` (DOCKER_HOST or the local socket by default), checked with a ping."""
    target = engine_url(url)
    try:
        client = docker.DockerClient(base_url=target, timeout=timeout, use_ssh_client=False)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise EngineUnreachable(
            f"the Docker engine at {target} does not answer ({_reason(exc)})",
            hint="start Docker (or fix DOCKER_HOST), then try again",
        ) from exc
    return client


def _reason(exc: BaseException) -> str:
    """The root cause in a few words ("Connection refused"), not the SDK's nested wrappers."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text) or re.search(r"Error\(-?\d+, '([^']+)'\)", text)
    return found.group(1).strip() if found else (text.splitlines()[0][:160] or exc.__class__.__name__)


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Translate SDK exceptions raised while doing `action` into BackendError."""
    try:
        yield
    except docker.errors.APIError as exc:
        raise BackendError(f"{action} failed: {exc.explanation or exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnreachable(f"{action} failed: the engine stopped answering ({exc})") from exc
