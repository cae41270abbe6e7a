"""The offer catalogue: which cloud GPU instances exist, where, at what price, and in which order to try them.

A catalogue ships with devenv (`data/aws_offers.json`), so `devenv offers` and the cheapest-first choice work
offline and without credentials; `refresh` rebuilds it from the provider's own APIs. `match` picks the offers
that fit a GPU request, cheapest first, and `placements` turns them into the failover order a provisioner walks:
the next zone on a capacity error, the next region or type on a quota error.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from devenv.errors import BackendError, ToolMissing, Unsupported, UsageError
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
    "refresh",
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


# ---------------------------------------------------------------------------------------------------- refresh

_PRICING_REGION = "us-east-1"  # the Pricing API's own endpoint; it answers for every region
_EC2_CALLS = "DescribeInstanceTypes, DescribeInstanceTypeOfferings, DescribeSpotPriceHistory"


@contextmanager
def _aws_errors(botocore_errors: tuple[type[BaseException], ...], region: str, call: str) -> Iterator[None]:
    """Turn botocore's errors inside the block into a BackendError that names the region and the call."""
    try:
        yield
    except botocore_errors as exc:
        hint = None
        if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}:
            hint = "give AWS credentials the usual way: AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or aws sso"
        raise BackendError(f"AWS {call} in {region} failed: {_reason(exc)}", hint=hint) from exc


def _pages(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    yield from client.get_paginator(operation).paginate(**kwargs)


def _shapes(ec2: Any, types: list[str]) -> dict[str, dict[str, Any]]:
    """instance type -> its shape (GPUs, vCPUs, RAM), for the GPU-bearing ones among `types`."""
    shapes: dict[str, dict[str, Any]] = {}
    for page in _pages(ec2, "describe_instance_types", Filters=[{"Name": "instance-type", "Values": types}]):
        for info in page.get("InstanceTypes", []):
            gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
            if not gpus:
                continue  # no GPU: not an offer this catalogue lists
            shapes[info["InstanceType"]] = {
                "gpu_type": gpus[0]["Name"],
                "gpu_count": sum(int(gpu.get("Count", 0)) for gpu in gpus),
                "gpu_memory_gib": round(gpus[0]["MemoryInfo"]["SizeInMiB"] / 1024, 1),
                "vcpus": int(info["VCpuInfo"]["DefaultVCpus"]),
                "memory_gib": round(info["MemoryInfo"]["SizeInMiB"] / 1024, 2),
            }
    return shapes


def _zones(ec2: Any, types: list[str]) -> dict[str, list[str]]:
    zones: dict[str, set[str]] = {}
    filters = [{"Name": "instance-type", "Values": types}]
    for page in _pages(ec2, "describe_instance_type_offerings", LocationType="availability-zone", Filters=filters):
        for item in page.get("InstanceTypeOfferings", []):
            zones.setdefault(item["InstanceType"], set()).add(item["Location"])
    return {name: sorted(found) for name, found in zones.items()}


def _spot_prices(ec2: Any, types: list[str], now: datetime) -> dict[str, float]:
    """The lowest current Linux spot price of each type across the region's zones."""
    lowest: dict[str, float] = {}
    pages = _pages(
        ec2, "describe_spot_price_history", ProductDescriptions=["Linux/UNIX"], InstanceTypes=types, StartTime=now
    )
    for page in pages:
        for item in page.get("SpotPriceHistory", []):
            price = float(item["SpotPrice"])
            if price > 0:
                name = item["InstanceType"]
                lowest[name] = min(price, lowest.get(name, price))
    return lowest


def _on_demand_price(pricing: Any, instance_type: str, region: str) -> float | None:
    """The Linux, shared-tenancy, no-extra-software on-demand price from the Pricing API; None when it has none."""
    filters = [
        {"Type": "TERM_MATCH", "Field": name, "Value": value}
        for name, value in (
            ("instanceType", instance_type),
            ("regionCode", region),
            ("operatingSystem", "Linux"),
            ("tenancy", "Shared"),
            ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"),
        )
    ]
    prices: list[float] = []
    for page in _pages(pricing, "get_products", ServiceCode="AmazonEC2", Filters=filters):
        for item in page.get("PriceList", []):
            product = json.loads(item) if isinstance(item, str) else item
            for term in (product.get("terms", {}).get("OnDemand") or {}).values():
                for dimension in (term.get("priceDimensions") or {}).values():
                    usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
                    if usd > 0:
                        prices.append(usd)
    return min(prices) if prices else None


def _reason(exc: BaseException) -> str:
    """A short, one-line cause for `source`: an error page's HTML is no use there."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        reason = f"{error.get('Code') or 'error'}, HTTP {status}"
        message = str(error.get("Message") or "").strip()
        if message and not message.startswith("<"):
            reason += f": {message.splitlines()[0][:160]}"
        return reason
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}".rstrip(": ")


def refresh(
    catalogue: Catalogue,
    *,
    regions: Iterable[str] | None = None,
    instance_types: Iterable[str] | None = None,
    endpoint_url: str | None = None,
    session: Any | None = None,
    now: datetime | None = None,
) -> Catalogue:
    """A new catalogue from AWS's own APIs, for `regions` (default: the catalogue's) and its instance types.

    Shapes and zones come from EC2, spot prices from the spot price history, on-demand prices from the
    Pricing API. When the Pricing API fails (no permission, not reachable) the previous on-demand prices are
    kept and `source` says so; an EC2 failure is a BackendError. A type with no zone in a region is not offered
    there and is dropped; regions not refreshed keep their offers. `session` is a boto3 Session (or anything with
    its `client()`); credentials come from boto3's usual chain. `endpoint_url` points every client elsewhere
    (a moto server in tests).
    """
    if catalogue.provider != "aws":
        raise Unsupported(f"refresh knows AWS only, not {catalogue.provider!r}")
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise ToolMissing(
            "refreshing AWS offers needs boto3, which is not installed", hint="pip install 'devenv[aws]'"
        ) from exc

    botocore_errors: tuple[type[BaseException], ...] = (BotoCoreError, ClientError)
    now = now or datetime.now(UTC)
    session = session or boto3.session.Session()
    wanted_regions = sorted(set(regions) if regions is not None else set(catalogue.regions()))
    types = sorted(set(catalogue.instance_types()) | set(instance_types or ()))
    if not wanted_regions or not types:
        raise UsageError("nothing to refresh: no regions or instance types", hint="pass regions= and instance_types=")
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=60)
    previous = {(offer.region, offer.instance_type): offer for offer in catalogue.offers}

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for region in wanted_regions:
        with _aws_errors(botocore_errors, region, "client(ec2)"):
            ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url, config=config)
        with _aws_errors(botocore_errors, region, "DescribeInstanceTypes"):
            shapes = _shapes(ec2, types)
        offered = [name for name in types if name in shapes]
        if not offered:
            continue
        with _aws_errors(botocore_errors, region, "DescribeInstanceTypeOfferings"):
            zones = _zones(ec2, offered)
        with _aws_errors(botocore_errors, region, "DescribeSpotPriceHistory"):
            spot = _spot_prices(ec2, offered, now)
        for name in offered:
            if zones.get(name):
                found[(region, name)] = {**shapes[name], "zones": zones[name], "spot_price": spot.get(name)}

    on_demand: dict[tuple[str, str], float] = {}
    pricing_failure: str | None = None
    try:
        pricing = session.client(
            "pricing",
            region_name=_PRICING_REGION,
            endpoint_url=endpoint_url,
            config=config.merge(Config(retries={"mode": "standard", "max_attempts": 2})),
        )
        for region, name in sorted(found):
            price = _on_demand_price(pricing, name, region)
            if price is not None:
                on_demand[(region, name)] = price
    except botocore_errors as exc:  # on-demand prices change rarely: the previous ones are still useful
        pricing_failure = _reason(exc)

    offers = [offer for offer in catalogue.offers if offer.region not in wanted_regions]
    unpriced: list[str] = []
    for (region, name), fresh in sorted(found.items()):
        old = previous.get((region, name))
        price = on_demand.get((region, name)) or (old.on_demand_price if old else None)
        if price is None:
            unpriced.append(f"{name} in {region}")
            continue
        shape = {**fresh, "zones": tuple(fresh["zones"])}
        offers.append(Offer(provider="aws", instance_type=name, region=region, on_demand_price=price, **shape))
    offers.sort(key=lambda offer: (offer.region, offer.on_demand_price, offer.instance_type))

    source = (
        f"AWS EC2 API ({_EC2_CALLS}) and AWS Pricing API (GetProducts: Linux, shared tenancy), "
        f"refreshed {now.date().isoformat()} for {', '.join(wanted_regions)}"
    )
    if endpoint_url:
        source += f" via {endpoint_url}"
    kept = sorted(set(catalogue.regions()) - set(wanted_regions))
    if kept:
        source += f"; {', '.join(kept)} as of {catalogue.updated.isoformat()}"
    if pricing_failure:
        source += (
            f"; the Pricing API was unavailable ({pricing_failure}): on-demand prices are kept "
            f"from the catalogue of {catalogue.updated.isoformat()}"
        )
    stale = [key for key in found if key not in on_demand and key in previous]
    if not pricing_failure and stale:
        source += f"; the Pricing API had no price for {len(stale)} offer(s), whose previous prices are kept"
    if unpriced:
        source += f"; left out for want of an on-demand price: {', '.join(unpriced)}"
    return Catalogue(provider="aws", updated=now.date(), source=source, offers=offers)
