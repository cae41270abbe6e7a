"""Unit parsers: the human forms a spec accepts, and the messages for the ones it does not."""

from __future__ import annotations

import pytest

from devenv.spec import GpuRequest, parse_duration, parse_gpu, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("1h30m", 5400),
        ("2h", 7200),
        ("45s", 45),
        ("1d", 86400),
        ("1d2h3m4s", 93784),
        ("1h 30m", 5400),
        ("2H", 7200),
        ("90", 90),
        (600, 600),
    ],
)
def test_parse_duration_accepts_human_forms(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "1.5h", "30x", "m", "h1", "30m1h", "-5m", "1 h x"])
def test_parse_duration_rejects_garbage_naming_the_form(bad: str) -> None:
    with pytest.raises(ValueError, match=r'expected a duration like "30m"'):
        parse_duration(bad)


@pytest.mark.parametrize("zero", [0, "0", "0m", "0h0m", -5])
def test_parse_duration_rejects_zero_and_negative(zero: str | int) -> None:
    with pytest.raises(ValueError, match="more than 0"):
        parse_duration(zero)


@pytest.mark.parametrize("bad", [True, False, 1.5, None, [1]])
def test_parse_duration_rejects_non_text(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("16Gi", 16 * 2**30),
        ("16G", 16 * 10**9),
        ("16g", 16 * 10**9),
        ("16gb", 16 * 10**9),
        ("100GB", 100 * 10**9),
        ("512Mi", 512 * 2**20),
        ("2Ki", 2048),
        ("1Ti", 2**40),
        ("3T", 3 * 10**12),
        ("8M", 8 * 10**6),
        ("1024", 1024),
        ("1024B", 1024),
        ("1.5Gi", 3 * 2**29),
        ("16 Gi", 16 * 2**30),
        ("4GiB", 4 * 2**30),
        (4096, 4096),
    ],
)
def test_parse_size_binary_and_decimal_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "16Xi", "Gi", "-1Gi", "1e9", "16 G B", "0x10"])
def test_parse_size_rejects_garbage_naming_the_form(bad: str) -> None:
    with pytest.raises(ValueError, match=r'expected a size like "16Gi"'):
        parse_size(bad)


@pytest.mark.parametrize("zero", [0, "0", "0Gi", -1])
def test_parse_size_rejects_zero_and_negative(zero: str | int) -> None:
    with pytest.raises(ValueError, match="more than 0"):
        parse_size(zero)


def test_parse_size_rejects_bool() -> None:
    with pytest.raises(ValueError, match="got true"):
        parse_size(True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A100:2", GpuRequest(type="A100", count=2)),
        ("A100", GpuRequest(type="A100", count=1)),
        ("H100:8", GpuRequest(type="H100", count=8)),
        (2, GpuRequest(count=2)),
        ("2", GpuRequest(count=2)),
        (" L4:1 ", GpuRequest(type="L4", count=1)),
        ("rtx-4090", GpuRequest(type="rtx-4090", count=1)),
    ],
)
def test_parse_gpu(value: str | int, expected: GpuRequest) -> None:
    assert parse_gpu(value) == expected


@pytest.mark.parametrize("bad", [0, -1, "0", "-2", "A100:0", "A100:-1", "A100:x", ":2", "", "A100:", "1:2", True])
def test_parse_gpu_rejects_bad_requests_naming_the_form(bad: str | int) -> None:
    with pytest.raises(ValueError, match=r'expected COUNT or TYPE\[:COUNT\], like "A100:2"'):
        parse_gpu(bad)


def test_gpu_request_str_is_the_spec_form_and_parses_back() -> None:
    assert str(GpuRequest(type="A100", count=2)) == "A100:2"
    assert str(GpuRequest(count=2)) == "2"
    for request in (GpuRequest(type="A100", count=2), GpuRequest(count=3)):
        assert parse_gpu(str(request)) == request


def test_gpu_request_is_frozen_and_hashable() -> None:
    request = GpuRequest(type="A100", count=2)
    with pytest.raises(ValueError, match="frozen"):
        request.count = 3  # type: ignore[misc]
    assert {request, GpuRequest(type="A100", count=2)} == {request}


@pytest.mark.parametrize(
    "huge", ["1" + "0" * 400 + "m", "9" * 40, 10**40, "3651d", 10 * 365 * 86400 + 1, "\u0663m", "\u00b2"]
)
def test_parse_duration_bounds_and_ascii_digits_only(huge: str | int) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(huge)
    assert parse_duration("3650d") == 10 * 365 * 86400


@pytest.mark.parametrize("huge", ["9" * 400, "9" * 30 + "Ti", 2**61])
def test_parse_size_never_overflows(huge: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(huge)


@pytest.mark.parametrize("huge", [1025, 10**40, "A100:" + "9" * 40, "\u00b2"])
def test_parse_gpu_bounds(huge: str | int) -> None:
    with pytest.raises(ValueError, match="GPU"):
        parse_gpu(huge)
    assert parse_gpu("A100:1024").count == 1024


def test_a_message_never_carries_a_huge_value() -> None:
    with pytest.raises(ValueError) as refused:
        parse_duration("1" * 100 + "m")
    assert len(str(refused.value)) < 200
