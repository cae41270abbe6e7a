"""The one boundary where the Docker SDK's exceptions become devenv errors (as httpx translates its transport's
in one place): BackendError for what the engine refused, with its explanation; PortInUse and MountSourceMissing
for the refusals a person fixes in devenv.yaml; EngineUnreachable when the engine does not answer.

Code elsewhere catches the SDK's exceptions only to decide (an image that is not there is None), never to
word them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from devenv.engine.sdk import APIError, DockerException, ImageNotFound, RequestException
from devenv.errors import BackendError, EngineUnreachable, MountSourceMissing, PortInUse

_PORT_TAKEN = ("port is already allocated", "address already in use")
_TAKEN_PORT = re.compile(r"(?:Bind for|listen tcp\d?) \S*?:(\d+)")
_BIND_MISSING = "bind source path does not exist"


@contextmanager
def engine_errors(action: str, url: str | None = None, *, ports: tuple[int, ...] = ()) -> Iterator[None]:
    """SDK failures while doing `action` as devenv errors. With the engine's `url` (a backend's calls), a
    socket error is the engine not answering too, and a refused port names the port (`ports`: the ones being
    published); without it (a build on the engine a command connected to), an OSError is the caller's own."""
    try:
        yield
    except APIError as exc:  # before DockerException and HTTPError: it is both
        explanation = str(exc.explanation or exc)
        if url is None:
            raise BackendError(f"{action} failed: {explanation}") from exc
        if any(words in explanation for words in _PORT_TAKEN):
            found = _TAKEN_PORT.search(explanation)
            port = found.group(1) if found else (", ".join(map(str, ports)) or "a published port")
            raise PortInUse(
                f"{action} on {url}: port {port} on the engine's 127.0.0.1 is already in use",
                hint="pick another port under `ports:` in devenv.yaml, or stop what uses it",
            ) from exc
        raise BackendError(f"{action} on {url}: {explanation}") from exc
    except (DockerException, RequestException) as exc:
        if url is None:
            raise EngineUnreachable(f"{action} failed: the engine stopped answering ({exc})") from exc
        raise unreachable(url, exc) from exc
    except OSError as exc:
        if url is None:
            raise
        raise unreachable(url, exc) from exc


def unreachable(
    url: str, exc: BaseException, *, hint: str = "start Docker (or fix the backend's URL / DOCKER_HOST), then try again"
) -> EngineUnreachable:
    return EngineUnreachable(f"the Docker engine at {url} does not answer ({reason(exc)})", hint=hint)


def reason(exc: BaseException) -> str:
    """The root cause in a few words ("Connection refused"), not the SDK's nested wrappers."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text) or re.search(r"Error\(-?\d+, '([^']+)'\)", text)
    return found.group(1).strip() if found else (text.splitlines()[0][:160] or exc.__class__.__name__)


def creation_error(
    cause: BaseException | None, action: str, url: str, *, image: str, binds: Iterable[str]
) -> BackendError | None:
    """What a failed container creation means for the person, when it is one of the failures they can fix."""
    if isinstance(cause, ImageNotFound):
        return BackendError(
            f"{action} on {url}: the image {image} is not on this engine",
            hint="rebuild the workspace's image (`devenv build`), then try again",
        )
    if isinstance(cause, APIError) and _BIND_MISSING in str(cause.explanation or ""):
        return MountSourceMissing(
            f"{action} on {url}: a folder to mount is missing on the engine's host ({', '.join(sorted(binds))})",
            hint="create it there, or fix `data: remote:` in devenv.yaml",
        )
    return None
