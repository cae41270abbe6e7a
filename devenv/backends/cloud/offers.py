"""The offer catalogue: which cloud GPU instances exist, where, at what price, and in which order to try them.

A catalogue ships with devenv (`data/aws_offers.json`), so `devenv offers` and the cheapest-first choice work
offline and without credentials; `refresh.refresh` rebuilds it from the provider's own APIs. `match` picks the offers
that fit a GPU request, cheapest first, and `placements` turns them into the failover order a provisioner walks:
the next zone on a capacity error, the next region or type on a quota error.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any

from devenv.errors import UsageError
from devenv.spec.units import GpuRequest, parse_gpu

__all__ = [
    "Catalogue",
    "GpuRequest",
    "Offer",
    "Placement",
    "load_catalogue",
    "match",
    "parse_gpu_request",
    "placements",
]

SHIPPED_AWS = "aws_offers.json"
_GPU_HINT = 'ask for TYPE[:COUNT] or COUNT, like "A100:2", "A100" (one), "any:1" or 2'
_ANY_TYPE = "any"
_OFFER_FIELDS = (
    "instance_type",
    "gpu_type",
    "gpu_count",
    "gpu_memory_gib",
    "vcpus",
    "memory_gib",
    "region",
    "on_demand_price",
    "spot_price",
    "zones",
)


@dataclass(frozen=True)
class Offer:
    """One instance type in one region: its shape, its prices (USD/hour) and the zones that offer it."""

    provider: str
    instance_type: str
    gpu_type: str
    gpu_count: int
    gpu_memory_gib: float  # per GPU
    vcpus: int
    memory_gib: float
    region: str
    on_demand_price: float
    spot_price: float | None
    zones: tuple[str, ...]

    def price(self, spot: bool) -> float | None:
        """The hourly price for that purchase option; None when the type has no spot market there."""
        return self.spot_price if spot else self.on_demand_price

    def describe(self) -> str:
        """One line for a terminal: what it is, where, and both prices."""
        spot = f"spot ${self.spot_price:.4g}/h" if self.spot_price is not None else "no spot"
        return (
            f"{self.instance_type} in {self.region}: {self.gpu_count}x {self.gpu_type} {self.gpu_memory_gib:g} GiB, "
            f"{self.vcpus} vCPUs, {self.memory_gib:g} GiB RAM, ${self.on_demand_price:.4g}/h on demand, {spot}, "
            f"zones {','.join(self.zones)}"
        )

    def to_json(self) -> dict[str, Any]:
        """The file's form of one offer (the provider is the catalogue's, not repeated per offer)."""
        return {
            "instance_type": self.instance_type,
            "gpu_type": self.gpu_type,
            "gpu_count": self.gpu_count,
            "gpu_memory_gib": self.gpu_memory_gib,
            "vcpus": self.vcpus,
            "memory_gib": self.memory_gib,
            "region": self.region,
            "on_demand_price": self.on_demand_price,
            "spot_price": self.spot_price,
            "zones": list(self.zones),
        }


@dataclass
class Catalogue:
    """Every known offer of one provider, and where and when the figures came from."""

    provider: str
    updated: date
    source: str
    offers: list[Offer] = field(default_factory=list)

    def regions(self) -> list[str]:
        return sorted({offer.region for offer in self.offers})

    def instance_types(self) -> list[str]:
        return sorted({offer.instance_type for offer in self.offers})

    def gpu_types(self) -> list[str]:
        """The GPU models on offer, for a hint when a request matches nothing."""
        return sorted({offer.gpu_type for offer in self.offers}, key=str.lower)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "updated": self.updated.isoformat(),
            "source": self.source,
            "offers": [offer.to_json() for offer in self.offers],
        }

    def save(self, path: Path) -> None:
        """Write the catalogue atomically, so a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class Placement:
    """One place to try a launch: an offer and one of its zones."""

    offer: Offer
    zone: str

    @property
    def region(self) -> str:
        return self.offer.region

    @property
    def instance_type(self) -> str:
        return self.offer.instance_type


# ---------------------------------------------------------------------------------------------------- loading


class _Malformed(Exception):
    """A field of the catalogue is wrong; turned into a UsageError naming the file by the caller."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")


def _number(raw: Mapping[str, Any], key: str, where: str, *, integer: bool = False, optional: bool = False) -> Any:
    value = raw.get(key)
    if value is None and optional:
        return None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise _Malformed(f"{where}.{key}", f"expected {kind}{' or null' if optional else ''}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _Malformed(f"{where}.{key}", f"expected {kind} above 0, got {value!r}")
    return value if integer else float(value)


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Malformed(f"{where}.{key}" if where else key, f"expected a non-empty string, got {value!r}")
    return value


def _offer(raw: object, provider: str, where: str) -> Offer:
    if not isinstance(raw, dict):
        raise _Malformed(where, f"expected an object, got {type(raw).__name__}")
    missing = [key for key in _OFFER_FIELDS if key not in raw]
    if missing:
        raise _Malformed(f"{where}.{missing[0]}", "missing")
    unknown = sorted(set(raw) - set(_OFFER_FIELDS))
    if unknown:
        raise _Malformed(f"{where}.{unknown[0]}", f"unknown field; expected only {', '.join(_OFFER_FIELDS)}")
    region = _text(raw, "region", where)
    zones = raw["zones"]
    if not isinstance(zones, list) or not zones or not all(isinstance(zone, str) for zone in zones):
        raise _Malformed(f"{where}.zones", f"expected a non-empty list of availability zones, got {zones!r}")
    outside = [zone for zone in zones if not zone.startswith(region)]
    if outside:
        raise _Malformed(f"{where}.zones", f"{outside[0]!r} is not a zone of region {region!r}")
    return Offer(
        provider=provider,
        instance_type=_text(raw, "instance_type", where),
        gpu_type=_text(raw, "gpu_type", where),
        gpu_count=_number(raw, "gpu_count", where, integer=True),
        gpu_memory_gib=_number(raw, "gpu_memory_gib", where),
        vcpus=_number(raw, "vcpus", where, integer=True),
        memory_gib=_number(raw, "memory_gib", where),
        region=region,
        on_demand_price=_number(raw, "on_demand_price", where),
        spot_price=_number(raw, "spot_price", where, optional=True),
        zones=tuple(zones),
    )


def _catalogue(raw: object) -> Catalogue:
    if not isinstance(raw, dict):
        raise _Malformed("(top level)", f"expected an object, got {type(raw).__name__}")
    provider = _text(raw, "provider", "")
    updated_text = _text(raw, "updated", "")
    try:
        updated = date.fromisoformat(updated_text)
    except ValueError:
        raise _Malformed("updated", f"expected a date like 2026-11-30, got {updated_text!r}") from None
    source = _text(raw, "source", "")
    offers = raw.get("offers")
    if not isinstance(offers, list):
        raise _Malformed("offers", f"expected a list of offers, got {offers!r}")
    return Catalogue(
        provider, updated, source, [_offer(item, provider, f"offers[{i}]") for i, item in enumerate(offers)]
    )


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The catalogue at `path`, or the one shipped with devenv (from a checkout or an installed wheel alike)."""
    if path is None:
        resource = files(__package__ or "devenv.backends.cloud").joinpath("data", SHIPPED_AWS)
        name, text = str(resource), resource.read_text(encoding="utf-8")
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the offer catalogue {name}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{name}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
            hint="restore the file, or write a fresh one with offers.refresh(...).save(path)",
        ) from exc
    try:
        return _catalogue(raw)
    except _Malformed as exc:
        raise UsageError(
            f"{name}: {exc}", hint="each offer needs " + ", ".join(_OFFER_FIELDS) + " (prices in USD/hour)"
        ) from None


# ---------------------------------------------------------------------------------------------------- matching


def parse_gpu_request(text: str | int) -> GpuRequest:
    """A GPU request as typed on a command line: "A100", "A100:2", "2" (any type), "any:1"; the spec's own parser."""
    try:
        request = parse_gpu(text)
    except ValueError as exc:
        raise UsageError(str(exc), hint=_GPU_HINT) from None
    if request.type is not None and request.type.lower() == _ANY_TYPE:
        return GpuRequest(count=request.count)
    return request


def match(
    catalogue: Catalogue,
    gpu: GpuRequest | None,
    *,
    spot: bool = False,
    regions: Iterable[str] | None = None,
    max_price: float | None = None,
    min_memory_gib: float | None = None,
    min_vcpus: int | None = None,
    min_gpu_memory_gib: float | None = None,
) -> list[Offer]:
    """The offers that fit, cheapest first (ties: fewer GPUs, then region, then type): the order to launch in.

    A type matches case-insensitively and by model only, so "A100" takes the 40 and the 80 GiB ones
    (`min_gpu_memory_gib` tells them apart). With `spot`, prices are spot prices and types without one are left out.
    `min_memory_gib` and `min_vcpus` are the host's RAM and vCPUs.
    """
    wanted_regions = None if regions is None else {region.lower() for region in regions}
    wanted_type = gpu.type.lower() if gpu is not None and gpu.type is not None else None
    fits: list[tuple[float, Offer]] = []
    for offer in catalogue.offers:
        price = offer.price(spot)
        if price is None:
            continue
        if gpu is not None and offer.gpu_count < gpu.count:
            continue
        if wanted_type is not None and offer.gpu_type.lower() != wanted_type:
            continue
        if wanted_regions is not None and offer.region.lower() not in wanted_regions:
            continue
        if max_price is not None and price > max_price:
            continue
        if min_memory_gib is not None and offer.memory_gib < min_memory_gib:
            continue
        if min_vcpus is not None and offer.vcpus < min_vcpus:
            continue
        if min_gpu_memory_gib is not None and offer.gpu_memory_gib < min_gpu_memory_gib:
            continue
        fits.append((price, offer))
    fits.sort(key=lambda item: (item[0], item[1].gpu_count, item[1].region, item[1].instance_type))
    return [offer for _, offer in fits]


def placements(offers: Iterable[Offer]) -> Iterator[Placement]:
    """The failover order: every zone of the first offer, then of the next, in the order given (match()'s).

    A provisioner moves to the next placement on InsufficientInstanceCapacity (another zone of the same
    offer), and on a quota error skips the placements of that region (or that type) that are left.
    """
    for offer in offers:
        for zone in offer.zones:
            yield Placement(offer, zone)
