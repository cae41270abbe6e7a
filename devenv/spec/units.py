"""Parsers for the human units a spec is written in: durations, byte sizes and GPU requests.

Each parser takes what a person types (or what a dump wrote back, an int) and returns a plain
number, or raises ValueError whose message names the expected form, so that the loader can show
it next to the offending line as is.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

# ASCII digits only, matched whole: `\d` takes other scripts' digits, `$` a trailing newline
_DURATION_RE = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_DURATION_FORM = 'expected a duration like "30m", "1h30m", "2h", "45s" or "1d"'
MAX_DURATION = 10 * 365 * 24 * 3600  # ten years: longer is a typo, and the store keeps 64-bit numbers
MAX_SIZE = 2**60  # an exbibyte
MAX_GPUS = 1024
_MAX_DIGITS = 30  # longer numbers are refused before any arithmetic

_SIZE_RE = re.compile(r"([0-9]{1,30}(?:\.[0-9]{1,30})?)\s*([A-Za-z]*)")
_SIZE_FORM = 'expected a size like "16Gi", "512Mi", "100GB" or a number of bytes'
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}

_GPU_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_GPU_FORM = 'expected COUNT or TYPE[:COUNT], like "A100:2", "A100" or 2'


class GpuRequest(BaseModel):
    """How many GPUs a workspace needs and, optionally, of which type (any type when None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str | None = Field(default=None, description='GPU model, like "A100"; any when omitted')
    count: int = Field(default=1, ge=1, description="number of GPUs")

    def __str__(self) -> str:
        """The spec form, so a dump writes back what a person would have typed."""
        return f"{self.type}:{self.count}" if self.type else str(self.count)


def _shown(value: object) -> str:
    """The value as a message quotes it, cut short: a message never carries a megabyte."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**_MAX_DIGITS else "a huge number"
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_bool(value: object, form: str) -> None:
    """YAML turns `yes`/`on` into True; a bool is never a valid quantity, whatever int() says."""
    if isinstance(value, bool):
        raise ValueError(f"got {str(value).lower()}; {form}")


def parse_duration(value: str | int) -> int:
    """Seconds in "30m", "1h30m", "2h", "45s", "1d" (or an int of seconds, as dumped); must be > 0."""
    _reject_bool(value, _DURATION_FORM)
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        text = "".join(value.split()).lower()
        if len(text) > 4 * _MAX_DIGITS:
            raise ValueError(f"{_shown(value)} is too long for a duration; {_DURATION_FORM}")
        if text.isascii() and text.isdigit():
            seconds = int(text)
        else:
            match = _DURATION_RE.fullmatch(text)
            if not text or match is None or not any(match.groups()):
                raise ValueError(f"{_shown(value)} is not a duration; {_DURATION_FORM}")
            days, hours, minutes, secs = (int(part or 0) for part in match.groups())
            seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    else:
        raise ValueError(f"{_DURATION_FORM}, got {type(value).__name__}")
    if seconds <= 0:
        raise ValueError(f"duration must be more than 0, got {_shown(value)}; {_DURATION_FORM}")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {_shown(value)} is more than ten years; {_DURATION_FORM}")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes in "16Gi" (binary), "16G"/"16gb" (decimal), "512Mi" or "1024" (bytes); must be > 0."""
    _reject_bool(value, _SIZE_FORM)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"{_shown(value)} is not a size; {_SIZE_FORM}")
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])  # 30 digits: finite, never an OverflowError
    else:
        raise ValueError(f"{_SIZE_FORM}, got {type(value).__name__}")
    if size <= 0:
        raise ValueError(f"size must be more than 0, got {_shown(value)}; {_SIZE_FORM}")
    if size > MAX_SIZE:
        raise ValueError(f"size {_shown(value)} is more than an exbibyte; {_SIZE_FORM}")
    return size


def _gpu_count(text: str, original: object) -> int:
    """The COUNT part, kept separate so "A100:x" and "0" get the same message."""
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS or not 1 <= int(text) <= MAX_GPUS:
        raise ValueError(f"GPU count must be a whole number from 1 to {MAX_GPUS}, got {_shown(original)}; {_GPU_FORM}")
    return int(text)


def parse_gpu(value: str | int) -> GpuRequest:
    """A GpuRequest from "A100:2", "A100", 2 or "2"."""
    _reject_bool(value, _GPU_FORM)
    if isinstance(value, int):
        if not 1 <= value <= MAX_GPUS:
            raise ValueError(f"GPU count must be from 1 to {MAX_GPUS}, got {_shown(value)}; {_GPU_FORM}")
        return GpuRequest(count=value)
    if not isinstance(value, str):
        raise ValueError(f"{_GPU_FORM}, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError(f"empty GPU request; {_GPU_FORM}")
    if text.isdigit() or text.startswith("-"):
        return GpuRequest(count=_gpu_count(text, value))
    gpu_type, sep, count_text = text.partition(":")
    if not _GPU_TYPE_RE.fullmatch(gpu_type):
        raise ValueError(f"{_shown(value)} is not a GPU request; {_GPU_FORM}")
    count = _gpu_count(count_text, value) if sep else 1
    return GpuRequest(type=gpu_type, count=count)
