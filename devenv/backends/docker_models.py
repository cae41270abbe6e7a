"""What a daemon.yaml entry of `type: docker` takes: typed, unknown keys refused.

backends:
  gpu-box: {type: docker, url: "ssh://me@gpu-box", identity: ~/.ssh/id_ed25519}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from devenv.backends.base import BackendFactory

if TYPE_CHECKING:
    from devenv.backends.base import Backend


class DockerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None,
        description="the engine: unix://, tcp:// or ssh://USER@HOST[:PORT]; "
        "none: DEVENV_ENGINE, DOCKER_HOST, else the local socket",
    )
    identity: str | None = Field(default=None, description="the private key for an ssh:// engine")
    timeout: PositiveInt = Field(default=120, description="seconds an engine call may take")


def _create(name: str, config: DockerConfig) -> Backend:
    from devenv.backends.docker import DockerBackend

    return DockerBackend(name, config.url, timeout=config.timeout, identity=config.identity)


DOCKER = BackendFactory(DockerConfig, _create)
