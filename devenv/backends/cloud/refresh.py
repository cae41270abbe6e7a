"""Refreshing the offer catalogue from AWS itself: shapes, zones and spot prices from EC2, on-demand prices
from the Pricing API (kept from the old catalogue, and said so, when that API does not answer)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from devenv.backends.cloud.offers import Catalogue, Offer
from devenv.errors import BackendError, ToolMissing, Unsupported, UsageError

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
