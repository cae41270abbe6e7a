"""Docker SDK failures as devenv errors: the one place the docker backend's foreign exceptions become
EngineUnreachable, PortInUse, MountSourceMissing or BackendError, each naming the engine's URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import requests.exceptions

from devenv.backends.base import LaunchRequest
from devenv.build.engine import _reason
from devenv.errors import BackendError, EngineUnreachable, MountSourceMissing, PortInUse

_PORT_TAKEN = ("port is already allocated", "address already in use")
_TAKEN_PORT = re.compile(r"(?:Bind for|listen tcp\d?) \S*?:(\d+)")
_BIND_MISSING = "bind source path does not exist"


@contextmanager
def translated(action: str, url: str, *, ports: tuple[int, ...] = ()) -> Iterator[None]:
    """Translate SDK failures during `action` on the engine at `url`; `ports`: the ones being published."""
    try:
        yield
    except docker.errors.APIError as exc:  # before DockerException and HTTPError: it is both
        explanation = str(exc.explanation or exc)
        if any(words in explanation for words in _PORT_TAKEN):
            found = _TAKEN_PORT.search(explanation)
            port = found.group(1) if found else (", ".join(map(str, ports)) or "a published port")
            raise PortInUse(
                f"{action} on {url}: port {port} on the engine's 127.0.0.1 is already in use",
                hint="pick another port under `ports:` in devenv.yaml, or stop what uses it",
            ) from exc
        raise BackendError(f"{action} on {url}: {explanation}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise EngineUnreachable(
            f"the Docker engine at {url} does not answer ({_reason(exc)})",
            hint="start Docker (or fix the backend's URL / DOCKER_HOST), then try again",
        ) from exc


def creation_error(cause: BaseException | None, action: str, url: str, request: LaunchRequest) -> BackendError | None:
    """What a failed `create_container` means for the person, when it is one of the failures they can fix."""
    if isinstance(cause, docker.errors.ImageNotFound):
        return BackendError(
            f"{action} on {url}: the image {request.image} is not on this engine",
            hint="rebuild the workspace's image (`devenv build`), then try again",
        )
    if isinstance(cause, docker.errors.APIError) and _BIND_MISSING in str(cause.explanation or ""):
        return MountSourceMissing(
            f"{action} on {url}: a folder to mount is missing on the engine's host "
            f"({', '.join(sorted(request.binds))})",
            hint="create it there, or fix `data: remote:` in devenv.yaml",
        )
    return None
