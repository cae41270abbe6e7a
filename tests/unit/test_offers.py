"""The cloud offer catalogue: the shipped AWS data, matching a GPU request, failover order, and refresh.

Refresh runs against a real moto server over HTTP. Moto answers the EC2 calls from its own copy of AWS's
instance data (shapes, zones) with a fixed fake spot price, and has no Pricing API: that path is checked
with botocore's Stubber on a real pricing client.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from devenv.backends.cloud import offers as offers_module
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
from devenv.errors import BackendError, ToolMissing, Unsupported, UsageError
from harness.s3_server import CREDENTIALS_ENV, S3Server

SHIPPED = Path(offers_module.__file__).parent / "data" / "aws_offers.json"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MOTO_SPOT_PRICE = 0.00001  # moto's describe_spot_price_history answers this for every type and zone

REQUIRED = {
    "g4dn.xlarge": "T4",
    "g4dn.2xlarge": "T4",
    "g4dn.12xlarge": "T4",
    "g5.xlarge": "A10G",
    "g5.2xlarge": "A10G",
    "g5.12xlarge": "A10G",
    "g5.48xlarge": "A10G",
    "g6.xlarge": "L4",
    "g6.12xlarge": "L4",
    "g6e.xlarge": "L40S",
    "p3.2xlarge": "V100",
    "p3.8xlarge": "V100",
    "p4d.24xlarge": "A100",
    "p4de.24xlarge": "A100",
    "p5.48xlarge": "H100",
}


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    return load_catalogue()


def offer(instance_type: str, region: str, price: float, *, gpus: int = 1, spot: float | None = None) -> Offer:
    return Offer(
        provider="aws",
        instance_type=instance_type,
        gpu_type="T4",
        gpu_count=gpus,
        gpu_memory_gib=16.0,
        vcpus=4 * gpus,
        memory_gib=16.0 * gpus,
        region=region,
        on_demand_price=price,
        spot_price=spot,
        zones=(f"{region}a", f"{region}b"),
    )


# ---------------------------------------------------------------------------------------------------- shipped data


def test_shipped_catalogue_loads_and_every_offer_is_sane(shipped: Catalogue) -> None:
    assert shipped.provider == "aws"
    assert shipped.updated == date(2026, 11, 30)
    assert "public list prices" in shipped.source and "refresh" in shipped.source
    assert set(shipped.regions()) == {"us-east-1", "us-west-2", "eu-west-1"}
    seen: set[tuple[str, str]] = set()
    for item in shipped.offers:
        assert (item.region, item.instance_type) not in seen, "one offer per type and region"
        seen.add((item.region, item.instance_type))
        assert item.provider == "aws"
        assert item.on_demand_price > 0
        assert item.gpu_count > 0 and item.gpu_memory_gib > 0 and item.vcpus > 0 and item.memory_gib > 0
        if item.spot_price is not None:
            assert 0.3 * item.on_demand_price <= item.spot_price < item.on_demand_price, item.describe()
        assert item.zones and all(
            zone.startswith(item.region) and len(zone) == len(item.region) + 1 for zone in item.zones
        )
        assert list(item.zones) == sorted(set(item.zones))
        assert item.gpu_type == REQUIRED[item.instance_type]
    assert set(shipped.instance_types()) == set(REQUIRED)
    east = {item.instance_type for item in shipped.offers if item.region == "us-east-1"}
    assert east == set(REQUIRED)


def test_shipped_shapes_are_the_published_ones(shipped: Catalogue) -> None:
    by_key = {(item.region, item.instance_type): item for item in shipped.offers}
    p4d, p4de, p5 = (by_key["us-east-1", name] for name in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"))
    assert (p4d.gpu_count, p4d.gpu_memory_gib, p4d.vcpus, p4d.memory_gib) == (8, 40, 96, 1152)
    assert (p4de.gpu_count, p4de.gpu_memory_gib) == (8, 80)
    assert (p5.gpu_type, p5.gpu_count, p5.gpu_memory_gib, p5.vcpus) == ("H100", 8, 80, 192)
    assert by_key["us-east-1", "g4dn.xlarge"].on_demand_price == pytest.approx(0.526)
    # prices differ by region: Ireland costs more than Virginia
    assert by_key["eu-west-1", "g5.xlarge"].on_demand_price > by_key["us-east-1", "g5.xlarge"].on_demand_price


def test_shipped_file_is_what_save_writes(shipped: Catalogue, tmp_path: Path) -> None:
    copy = tmp_path / "offers.json"
    shipped.save(copy)
    assert copy.read_text(encoding="utf-8") == SHIPPED.read_text(encoding="utf-8")
    assert load_catalogue(copy) == shipped
    assert list(tmp_path.iterdir()) == [copy], "no temporary file left behind"


def test_shipped_file_lives_inside_the_package() -> None:
    """hatch packs the whole `devenv` package, so a file under it is in the wheel too."""
    package = Path(offers_module.__file__).resolve().parents[2]
    assert package.name == "devenv"
    assert SHIPPED.resolve().is_relative_to(package)


def test_describe_is_one_line(shipped: Catalogue) -> None:
    p4de = next(item for item in shipped.offers if item.instance_type == "p4de.24xlarge")
    line = p4de.describe()
    assert "\n" not in line
    assert "p4de.24xlarge" in line and p4de.region in line and "8x A100 80 GiB" in line and "no spot" in line
    assert p4de.price(spot=True) is None and p4de.price(spot=False) == p4de.on_demand_price


# ---------------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A100", GpuRequest(type="A100", count=1)),
        ("A100:2", GpuRequest(type="A100", count=2)),
        ("a100:2", GpuRequest(type="a100", count=2)),
        (" H100:8 ", GpuRequest(type="H100", count=8)),
        ("2", GpuRequest(count=2)),
        (2, GpuRequest(count=2)),
        ("any:1", GpuRequest(count=1)),
        ("ANY:4", GpuRequest(count=4)),
        ("any", GpuRequest(count=1)),
    ],
)
def test_parse_gpu_request(text: str | int, expected: GpuRequest) -> None:
    assert parse_gpu_request(text) == expected


@pytest.mark.parametrize("text", ["", "A100:0", "A100:x", "A100:", ":2", "0", "-1", "A 100", "8xA100", True])
def test_parse_gpu_request_rejects_with_the_format(text: Any) -> None:
    with pytest.raises(UsageError) as caught:
        parse_gpu_request(text)
    assert "A100:2" in (caught.value.hint or "")
    assert caught.value.exit_code == 2


# ---------------------------------------------------------------------------------------------------- matching


def test_a100_request_gives_p4d_cheapest_region_first_then_p4de(shipped: Catalogue) -> None:
    found = match(shipped, parse_gpu_request("A100:1"))
    assert [item.instance_type for item in found] == ["p4d.24xlarge"] * 3 + ["p4de.24xlarge"] * 2
    assert [item.region for item in found[:3]] == ["us-east-1", "us-west-2", "eu-west-1"]
    prices = [item.on_demand_price for item in found]
    assert prices == sorted(prices)
    assert match(shipped, parse_gpu_request("a100:1")) == found, "GPU types compare case-insensitively"
    assert match(shipped, parse_gpu_request("A100:8")) == found
    assert match(shipped, parse_gpu_request("A100:9")) == []


def test_gpu_memory_tells_the_a100s_apart(shipped: Catalogue) -> None:
    found = match(shipped, parse_gpu_request("A100"), min_gpu_memory_gib=80)
    assert {item.instance_type for item in found} == {"p4de.24xlarge"}


def test_t4_cheapest_is_g4dn_xlarge(shipped: Catalogue) -> None:
    found = match(shipped, parse_gpu_request("T4:1"))
    assert (found[0].instance_type, found[0].region) == ("g4dn.xlarge", "us-east-1")
    assert {item.gpu_type for item in found} == {"T4"}
    four = match(shipped, parse_gpu_request("T4:4"))
    assert {item.instance_type for item in four} == {"g4dn.12xlarge"}


def test_spot_orders_by_spot_price_and_skips_offers_without_one(shipped: Catalogue) -> None:
    found = match(shipped, parse_gpu_request("T4:1"), spot=True)
    assert (found[0].instance_type, found[0].region) == ("g4dn.xlarge", "us-west-2")
    spot_prices = [item.spot_price for item in found]
    assert None not in spot_prices and spot_prices == sorted(spot_prices)  # type: ignore[type-var]
    a100 = match(shipped, parse_gpu_request("A100"), spot=True)
    assert a100 and {item.instance_type for item in a100} == {"p4d.24xlarge"}, "p4de has no spot price"
    everything = match(shipped, None, spot=True)
    assert len(everything) == sum(1 for item in shipped.offers if item.spot_price is not None)


def test_no_request_lists_every_offer_cheapest_first(shipped: Catalogue) -> None:
    found = match(shipped, None)
    assert len(found) == len(shipped.offers)
    assert [item.on_demand_price for item in found] == sorted(item.on_demand_price for item in shipped.offers)
    assert found[0].instance_type == "g4dn.xlarge"
    assert found[-1].instance_type == "p5.48xlarge"


def test_a_bare_count_takes_any_type(shipped: Catalogue) -> None:
    found = match(shipped, parse_gpu_request("4"))
    assert found and all(item.gpu_count >= 4 for item in found)
    assert len({item.gpu_type for item in found}) > 3
    assert match(shipped, parse_gpu_request("any:4")) == found


def test_filters(shipped: Catalogue) -> None:
    cheap = match(shipped, None, max_price=1.0)
    assert cheap and all(item.on_demand_price <= 1.0 for item in cheap)
    assert {item.instance_type for item in cheap} >= {"g4dn.xlarge", "g4dn.2xlarge", "g6.xlarge"}
    cheap_spot = match(shipped, parse_gpu_request("A10G"), spot=True, max_price=1.0)
    assert cheap_spot and all(item.spot_price is not None and item.spot_price <= 1.0 for item in cheap_spot)
    assert len(cheap_spot) > len(match(shipped, parse_gpu_request("A10G"), max_price=1.0))

    irish = match(shipped, parse_gpu_request("A100"), regions=["EU-WEST-1"])
    assert [(item.instance_type, item.region) for item in irish] == [("p4d.24xlarge", "eu-west-1")]
    assert match(shipped, None, regions=[]) == []

    big = match(shipped, None, min_memory_gib=1000, min_vcpus=96)
    assert {item.instance_type for item in big} == {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"}
    assert all(item.vcpus >= 8 for item in match(shipped, parse_gpu_request("T4"), min_vcpus=8))


def test_ties_go_to_fewer_gpus_then_region_then_type() -> None:
    catalogue = Catalogue(
        "aws",
        date(2026, 11, 30),
        "test",
        [
            offer("b.two", "us-east-1", 1.0, gpus=2),
            offer("b.one", "us-west-2", 1.0),
            offer("a.one", "us-west-2", 1.0),
            offer("c.one", "eu-west-1", 1.0),
            offer("cheap", "us-west-2", 0.5, gpus=4),
        ],
    )
    found = match(catalogue, parse_gpu_request("1"))
    assert [(item.instance_type, item.region) for item in found] == [
        ("cheap", "us-west-2"),
        ("c.one", "eu-west-1"),
        ("a.one", "us-west-2"),
        ("b.one", "us-west-2"),
        ("b.two", "us-east-1"),
    ]


# ---------------------------------------------------------------------------------------------------- failover


def test_placements_walk_every_zone_of_each_offer_in_price_order(shipped: Catalogue) -> None:
    found = match(shipped, parse_gpu_request("A100"))
    walk = list(placements(found))
    assert walk[0] == Placement(found[0], "us-east-1a")
    assert [place.zone for place in walk[:4]] == ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    assert [(place.instance_type, place.region) for place in walk[4:8]] == [("p4d.24xlarge", "us-west-2")] * 4
    assert walk[8] == Placement(found[2], "eu-west-1c")
    assert len(walk) == sum(len(item.zones) for item in found)
    assert all(place.zone.startswith(place.region) for place in walk)
    assert list(placements([])) == []


# ---------------------------------------------------------------------------------------------------- malformed files


def _mutated(tmp_path: Path, change: Any) -> Path:
    raw = json.loads(SHIPPED.read_text(encoding="utf-8"))
    change(raw)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda raw: raw["offers"][1].update(spot_price="cheap"), "offers[1].spot_price", "a number or null"),
        (lambda raw: raw["offers"][2].update(on_demand_price=0), "offers[2].on_demand_price", "above 0"),
        (lambda raw: raw["offers"][0].update(gpu_count=1.5), "offers[0].gpu_count", "whole number"),
        (lambda raw: raw["offers"][0].update(gpu_count=True), "offers[0].gpu_count", "whole number"),
        (lambda raw: raw["offers"][3].pop("zones"), "offers[3].zones", "missing"),
        (lambda raw: raw["offers"][3].update(zones=[]), "offers[3].zones", "non-empty list"),
        (lambda raw: raw["offers"][0].update(zones=["us-west-2a"]), "offers[0].zones", "not a zone of region"),
        (lambda raw: raw["offers"][0].update(instance_type=""), "offers[0].instance_type", "non-empty string"),
        (lambda raw: raw["offers"][0].update(gpu_typ="T4"), "offers[0].gpu_typ", "unknown field"),
        (lambda raw: raw["offers"].__setitem__(4, "g5.xlarge"), "offers[4]", "expected an object"),
        (lambda raw: raw.update(updated="last week"), "updated", "a date"),
        (lambda raw: raw.pop("provider"), "provider", "non-empty string"),
        (lambda raw: raw.update(offers={}), "offers", "a list of offers"),
    ],
)
def test_a_malformed_file_names_the_file_and_the_field(tmp_path: Path, change: Any, field: str, says: str) -> None:
    path = _mutated(tmp_path, change)
    with pytest.raises(UsageError) as caught:
        load_catalogue(path)
    message = caught.value.message
    assert message.startswith(f"{path}: {field}:"), message
    assert says in message
    assert caught.value.hint and "on_demand_price" in caught.value.hint


def test_invalid_json_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "offers.json"
    path.write_text('{"provider": "aws",\n  "offers": [,]}', encoding="utf-8")
    with pytest.raises(UsageError, match=rf"^{path}:2:\d+: not valid JSON"):
        load_catalogue(path)
    with pytest.raises(UsageError, match="cannot read the offer catalogue"):
        load_catalogue(tmp_path / "absent.json")


# ---------------------------------------------------------------------------------------------------- refresh


@pytest.fixture(scope="module")
def moto() -> Iterator[S3Server]:
    """Moto's ThreadedMotoServer (the repo's S3 test server serves every moto service, EC2 included)."""
    with S3Server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Moto's fake credentials, and nothing from this machine's own AWS configuration."""
    for name, value in CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def refreshed(shipped: Catalogue, moto: S3Server) -> Catalogue:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS_ENV.items():
            patch.setenv(name, value)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        patch.delenv("AWS_PROFILE", raising=False)
        return refresh(shipped, endpoint_url=moto.endpoint(), now=NOW)


def test_refresh_takes_shapes_zones_and_spot_prices_from_ec2(shipped: Catalogue, refreshed: Catalogue) -> None:
    by_key = {(item.region, item.instance_type): item for item in refreshed.offers}
    g5 = by_key["us-east-1", "g5.xlarge"]
    assert (g5.gpu_type, g5.gpu_count, g5.vcpus, g5.memory_gib) == ("A10G", 1, 4, 16.0)
    assert g5.gpu_memory_gib == 22.4  # the EC2 API's 22888 MiB
    assert g5.zones == ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f")
    assert g5.spot_price == MOTO_SPOT_PRICE
    p4d = by_key["us-east-1", "p4d.24xlarge"]
    assert (p4d.gpu_type, p4d.gpu_count, p4d.gpu_memory_gib, p4d.vcpus, p4d.memory_gib) == ("A100", 8, 40, 96, 1152)
    assert by_key["us-east-1", "p4de.24xlarge"].gpu_memory_gib == 80
    assert by_key["us-east-1", "p5.48xlarge"].zones[-1] == "us-east-1f"
    assert by_key["eu-west-1", "p4d.24xlarge"].zones == ("eu-west-1c",)
    assert all(item.spot_price == MOTO_SPOT_PRICE for item in refreshed.offers)
    assert refreshed.updated == NOW.date()
    assert refreshed.regions() == shipped.regions()

    # moto knows nothing of p3: a type EC2 does not list is dropped (it could not be launched either)
    assert "p3.2xlarge" not in refreshed.instance_types()
    assert {key for key in by_key} == {
        (item.region, item.instance_type) for item in shipped.offers if not item.instance_type.startswith("p3.")
    }
    # the shipped shapes and zones agree with what EC2 reports
    old = {(item.region, item.instance_type): item for item in shipped.offers}
    for key, item in by_key.items():
        before = old[key]
        assert (item.gpu_type, item.gpu_count, item.gpu_memory_gib, item.vcpus, item.memory_gib, item.zones) == (
            before.gpu_type,
            before.gpu_count,
            before.gpu_memory_gib,
            before.vcpus,
            before.memory_gib,
            before.zones,
        ), key


def test_refresh_keeps_on_demand_prices_when_the_pricing_api_fails(shipped: Catalogue, refreshed: Catalogue) -> None:
    """Moto has no Pricing API (its server answers 500): the previous prices stay, and `source` says why."""
    old = {(item.region, item.instance_type): item.on_demand_price for item in shipped.offers}
    for item in refreshed.offers:
        assert item.on_demand_price == old[item.region, item.instance_type]
    assert "Pricing API was unavailable (500, HTTP 500)" in refreshed.source, refreshed.source
    assert "kept from the catalogue of 2026-11-30" in refreshed.source
    assert "DescribeInstanceTypes" in refreshed.source and "2026-12-01" in refreshed.source


def test_a_refreshed_catalogue_saves_loads_and_matches(refreshed: Catalogue, tmp_path: Path) -> None:
    path = tmp_path / "aws.json"
    refreshed.save(path)
    assert load_catalogue(path) == refreshed
    assert match(refreshed, parse_gpu_request("A100"))[0].instance_type == "p4d.24xlarge"


def test_refresh_of_some_regions_keeps_the_others(shipped: Catalogue, moto: S3Server, aws_env: None) -> None:
    fresh = refresh(shipped, regions=["eu-west-1", "ap-northeast-1"], endpoint_url=moto.endpoint(), now=NOW)
    untouched = [item for item in shipped.offers if item.region != "eu-west-1"]
    assert [item for item in fresh.offers if item.region not in {"eu-west-1", "ap-northeast-1"}] == untouched
    assert {item.instance_type for item in fresh.offers if item.region == "eu-west-1"} == {
        "g4dn.xlarge", "g4dn.2xlarge", "g4dn.12xlarge", "g5.xlarge", "g5.2xlarge", "g5.12xlarge", "g5.48xlarge",
        "p4d.24xlarge",
    }  # fmt: skip
    # Tokyo is new: without the Pricing API there is no on-demand price to list it with
    assert not any(item.region == "ap-northeast-1" for item in fresh.offers)
    assert "left out for want of an on-demand price" in fresh.source and "ap-northeast-1" in fresh.source
    assert "us-east-1, us-west-2 as of 2026-11-30" in fresh.source


def _price_list(instance_type: str, region: str, usd: str) -> str:
    """One product of the Pricing API, in its real shape (trimmed to what matters)."""
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": instance_type, "regionCode": region}},
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    "SKU.JRTCKXETXF": {
                        "priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}
                    }
                }
            },
        }
    )


class _Session:
    """A boto3 session whose clients go to moto, except the ones a test stubbed."""

    def __init__(self, stubbed: dict[str, Any]) -> None:
        import boto3

        self.real = boto3.session.Session()
        self.stubbed = stubbed

    def client(self, service: str, **kwargs: Any) -> Any:
        return self.stubbed.get(service) or self.real.client(service, **kwargs)


def _pricing_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    pairs = [
        ("instanceType", instance_type),
        ("regionCode", region),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
    ]
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in pairs]


def test_refresh_reads_on_demand_prices_from_the_pricing_api(shipped: Catalogue, moto: S3Server, aws_env: None) -> None:
    import boto3
    from botocore.stub import Stubber

    wanted = {"g5.xlarge", "p4d.24xlarge"}
    small = [replace(item, on_demand_price=2.0) for item in shipped.offers if item.instance_type in wanted]
    small = [item for item in small if item.region == "us-east-1"]
    pricing = boto3.client("pricing", region_name="us-east-1")
    stubber = Stubber(pricing)
    stubber.add_response(
        "get_products",
        {"PriceList": [_price_list("g5.xlarge", "us-east-1", "1.0060000000")], "FormatVersion": "aws_v1"},
        {"ServiceCode": "AmazonEC2", "Filters": _pricing_filters("g5.xlarge", "us-east-1")},
    )
    stubber.add_response(
        "get_products",
        {"PriceList": [], "FormatVersion": "aws_v1"},
        {"ServiceCode": "AmazonEC2", "Filters": _pricing_filters("p4d.24xlarge", "us-east-1")},
    )
    with stubber:
        fresh = refresh(
            Catalogue("aws", shipped.updated, "", small),
            endpoint_url=moto.endpoint(),
            session=_Session({"pricing": pricing}),
            now=NOW,
        )
        stubber.assert_no_pending_responses()
    prices = {item.instance_type: item.on_demand_price for item in fresh.offers}
    assert prices == {"g5.xlarge": 1.006, "p4d.24xlarge": 2.0}  # the API's price; the old one where it had none
    assert "unavailable" not in fresh.source
    assert "had no price for 1 offer" in fresh.source


def test_an_ec2_error_names_the_region_and_the_call(shipped: Catalogue, moto: S3Server, aws_env: None) -> None:
    import boto3
    from botocore.stub import Stubber

    ec2 = boto3.client("ec2", region_name="us-west-2")
    stubber = Stubber(ec2)
    stubber.add_client_error("describe_instance_types", "UnauthorizedOperation", "You are not authorized")
    west = Catalogue("aws", shipped.updated, "", [item for item in shipped.offers if item.region == "us-west-2"])
    with stubber, pytest.raises(BackendError) as caught:
        refresh(west, endpoint_url=moto.endpoint(), session=_Session({"ec2": ec2}), now=NOW)
    assert "DescribeInstanceTypes in us-west-2" in caught.value.message
    assert "UnauthorizedOperation" in caught.value.message
    assert type(caught.value.__cause__).__name__ == "ClientError"


def test_no_credentials_is_a_backend_error_with_a_hint(
    shipped: Catalogue, moto: S3Server, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CREDENTIALS_ENV:
        monkeypatch.delenv(name)
    with pytest.raises(BackendError) as caught:
        refresh(shipped, regions=["us-east-1"], endpoint_url=moto.endpoint(), now=NOW)
    assert "in us-east-1" in caught.value.message
    assert caught.value.hint and "AWS_PROFILE" in caught.value.hint


def test_refresh_without_boto3_says_how_to_get_it(shipped: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ToolMissing) as caught:
        refresh(shipped)
    assert caught.value.hint == "pip install 'devenv[aws]'"


def test_refresh_knows_aws_only(shipped: Catalogue) -> None:
    with pytest.raises(Unsupported):
        refresh(Catalogue("gcp", shipped.updated, "", []))
