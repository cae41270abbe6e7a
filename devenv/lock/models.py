"""The shape of devenv.lock: every pin an image build needs, and the inputs they were resolved from."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

LOCK_FILENAME = "devenv.lock"
LOCK_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Wheel(_Strict):
    filename: str
    url: str
    sha256: str
    size: int | None = None


class Sdist(_Strict):
    filename: str
    url: str
    sha256: str
    size: int | None = None


class PythonPackage(_Strict):
    """One pinned package. `sdist` is set when the project publishes no fitting wheel: `wheel` was then
    built from it when locking (`wheel.url` is the sdist's), and the lock holds both hashes."""

    name: str
    version: str
    wheel: Wheel
    sdist: Sdist | None = None

    @model_serializer(mode="wrap")
    def _without_absent_sdist(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # locks of wheel-only packages keep their bytes (and image hashes) from before sdists were allowed
        data: dict[str, Any] = handler(self)
        if data.get("sdist") is None:
            data.pop("sdist", None)
        return data


class AptPackage(_Strict):
    name: str
    version: str
    arch: str
    filename: str
    url: str
    sha256: str
    size: int


class BaseImage(_Strict):
    recipe: str
    image: str
    digest: str
    source: Literal["bootstrap", "registry"]
    upstream: str
    python: str
    # Debian package -> version in a bootstrapped base (reproducible: the same versions give the same digest)
    packages: dict[str, str] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_packages(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # locks on a base made before its packages were recorded keep their bytes (and image hashes)
        data: dict[str, Any] = handler(self)
        if data.get("packages") is None:
            data.pop("packages", None)
        return data


class LockInputs(_Strict):
    """What the spec asked for; `devenv lock --check` compares these against the spec."""

    base: str
    python: str
    platform: str
    apt: list[str]
    requirements: dict[str, str]
    extra_python: list[str]
    tooling: list[str]
    # the spec's requirements_as_of: the requirements were resolved against PyPI as of that day's end
    requirements_as_of: str | None = None
    old_pins: Literal["refuse", "move"] = "refuse"  # the spec's old_pins

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # locks made before these inputs existed, or not using them, keep their bytes (and image hashes)
        data: dict[str, Any] = handler(self)
        if data.get("requirements_as_of") is None:
            data.pop("requirements_as_of", None)
        if data.get("old_pins") == "refuse":
            data.pop("old_pins", None)
        return data

    def requirements_snapshot(self, resolved_at: str) -> str:
        """The index time the requirements resolve against: the end of the spec's day, else the lock's time."""
        return f"{self.requirements_as_of}T23:59:59Z" if self.requirements_as_of else resolved_at


class Lock(_Strict):
    version: int = LOCK_VERSION
    resolved_at: str
    inputs: LockInputs
    base: BaseImage
    apt: list[AptPackage]
    python: list[PythonPackage]
    tooling: list[PythonPackage]
    # old_pins: move: name -> "OLD -> NEW" for each exact pin moved to the nearest release with a wheel
    moved: dict[str, str] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_moves(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not data.get("moved"):
            data.pop("moved", None)
        return data

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()
