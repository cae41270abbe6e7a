"""Reaching a Docker engine: its URL, whether it runs on this machine, a client checked with a ping.

Nothing here assumes the engine is local: paths on this machine never reach the engine except
inside a build context or an import stream, so ssh:// engines work the same way.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from devenv.engine.errors import unreachable
from devenv.engine.sdk import DockerClient, DockerException, RequestException


def engine_url(url: str | None = None) -> str:
    return url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_local_engine(url: str) -> bool:
    """The engine runs on this machine (a unix socket or localhost): its containers' network and its host's
    commands are within reach."""
    parts = urlsplit(url)
    return parts.scheme in ("unix", "npipe") or parts.hostname in ("127.0.0.1", "localhost", "::1")


def connect(url: str | None = None, *, timeout: int = 600) -> DockerClient:
    """A client for the engine at `url` (DOCKER_HOST or the local socket by default), checked with a ping."""
    target = engine_url(url)
    try:
        client = DockerClient(base_url=target, timeout=timeout, use_ssh_client=False)
        client.ping()
    except (DockerException, RequestException, OSError) as exc:
        raise unreachable(target, exc, hint="start Docker (or fix DOCKER_HOST), then try again") from exc
    return client
