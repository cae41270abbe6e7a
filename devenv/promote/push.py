"""Pushing the production image and proving it arrived: pulled back by digest, the same image id.

The Docker engine reports push failures inside its progress stream, not as an HTTP error (the SDK
raises nothing), so every event is read; a failure leaves the local image exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devenv.engine.errors import engine_errors
from devenv.engine.sdk import APIError, DockerClient, parse_repository_tag
from devenv.errors import BackendError
from devenv.progress import Progress, emit


class PushFailed(BackendError):
    code = "push_failed"


@dataclass(frozen=True)
class Pushed:
    reference: str  # REGISTRY/NAME@sha256:...
    digest: str
    layers_sent: int
    layers_present: int  # the registry had them already (the dev image's, a previous push's)
    bytes_sent: int  # compressed bytes of the layers sent


def _hint(message: str, tag: str) -> str:
    lowered = message.lower()
    if any(word in lowered for word in ("unauthorized", "authentication required", "no basic auth", "denied")):
        return f"log in to the registry (`docker login REGISTRY`) and promote again; the local image {tag} is intact"
    return f"check the registry's address and that it runs; the local image {tag} is intact"


def push(
    client: DockerClient,
    tag: str,
    *,
    auth_config: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Pushed:
    repository, version = parse_repository_tag(tag)
    sizes: dict[str, int] = {}
    sent: set[str] = set()
    present: set[str] = set()
    digest = None
    emit(progress, "phase", f"pushing {tag}")
    with engine_errors(f"pushing {tag}"):
        events = client.api.push(repository, tag=version, stream=True, decode=True, auth_config=auth_config)
        for event in events:
            _read(event, tag, sizes, sent, present)
            aux = event.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
    if digest is None:
        raise PushFailed(f"pushing {tag}: the engine reported no digest", hint=_hint("", tag))
    reference = f"{repository}@{digest}"
    local = client.images.get(tag).id
    emit(progress, "phase", f"pulling {reference} back to check it")
    with engine_errors(f"pulling {reference} back"):
        try:
            pulled = client.images.pull(reference, auth_config=auth_config)
        except APIError as error:
            raise PushFailed(
                f"pulling {reference} back failed: {error.explanation or error}",
                hint=_hint(str(error.explanation or error), tag),
            ) from error
    if pulled.id != local:
        raise PushFailed(f"{reference} pulled back as {pulled.id}, not the pushed {local}")
    return Pushed(reference, digest, len(sent), len(present), sum(sizes.get(layer, 0) for layer in sent))


def _read(event: dict[str, Any], tag: str, sizes: dict[str, int], sent: set[str], present: set[str]) -> None:
    if "error" in event:
        message = str(event.get("error") or (event.get("errorDetail") or {}).get("message") or "failed")
        raise PushFailed(f"pushing {tag}: {message}", hint=_hint(message, tag))
    layer, status = event.get("id"), str(event.get("status") or "")
    if not layer:
        return
    if status == "Layer already exists":
        present.add(layer)
    elif status == "Pushing":
        sent.add(layer)
        total = (event.get("progressDetail") or {}).get("total")
        if total:
            sizes[layer] = int(total)
    elif status == "Pushed":
        sent.add(layer)
