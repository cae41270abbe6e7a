"""What a daemon.yaml entry of `type: aws` takes: typed, unknown keys refused (docs/backends.md has an example)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from devenv.backends.base import BackendFactory

if TYPE_CHECKING:
    from devenv.backends.base import Backend


class AwsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: list[str] | None = Field(default=None, description="regions to launch in; none: the catalogue's")
    endpoint_url: str | None = Field(default=None, description="another EC2 endpoint (a test double)")
    spot: bool = Field(default=False, description="ask for spot capacity")
    on_stop: Literal["stop", "terminate"] = Field(
        default="stop", description="stop keeps the disk (and the home on it); terminate is cheapest, the home is lost"
    )
    ssh_user: str = Field(default="ubuntu", description="the image's login user")
    address_map: dict[str, str] = Field(default_factory=dict, description="instance address -> address to dial")
    ami: str | dict[str, str] | None = Field(default=None, description="an AMI, or one per region")
    ssh_cidr: str = Field(default="0.0.0.0/0", description="who may reach the instances' SSH port")
    max_price: PositiveFloat | None = Field(default=None, description="USD per hour at most")
    root_gib: int = Field(default=200, ge=8, description="the root disk, GiB")
    ready_timeout: PositiveFloat = Field(default=1800, description="seconds an instance may take to be ready")


def _create(name: str, config: AwsConfig) -> Backend:
    from devenv.backends.cloud.aws import AwsBackend

    return AwsBackend(name, **config.model_dump())


AWS = BackendFactory(AwsConfig, _create)
