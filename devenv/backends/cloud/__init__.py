"""Cloud GPU instances: the offer catalogue (what exists, where, at what price) that provisioning chooses from."""

from __future__ import annotations

from devenv.backends.cloud.offers import (
    Catalogue,
    GpuRequest,
    Offer,
    Placement,
    load_catalogue,
    match,
    parse_gpu_request,
    placements,
)
from devenv.backends.cloud.refresh import refresh

__all__ = [
    "Catalogue",
    "GpuRequest",
    "Offer",
    "Placement",
    "load_catalogue",
    "match",
    "parse_gpu_request",
    "placements",
    "refresh",
]
