"""Parsers for the human units a spec is written in: durations, byte sizes and GPU requests.

Each parser takes what a person types (or what a dump wrote back, an int) and returns a plain
number, or raises ValueError whose message names the expected form, so that the loader can show
it next to the offending line as is.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_FORM = 'expected a duration like "30m", "1h30m", "2h", "45s" or "1d"'

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
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

_GPU_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_GPU_FORM = 'expected COUNT or TYPE[:COUNT], like "A100:2", "A100" or 2'


class GpuRequest(BaseModel):
    """How many GPUs a workspace needs and, optionally, of which type (any type when None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str | None = Field(default=None, description='GPU model, like "A100"; any when omitted')
    count: int = Field(default=1, ge=1, description="number of GPUs")

    def __str__(self) -> str:
        """The spec form, so a dump writes back what a person would have typed."""
        return f"{self.type}:{self.count}" if self.type else str(self.count)


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
        if text.isdigit():
            seconds = int(text)
        else:
            match = _DURATION_RE.match(text)
            if not text or match is None or not any(match.groups()):
                raise ValueError(f"{value!r} is not a duration; {_DURATION_FORM}")
            days, hours, minutes, secs = (int(part or 0) for part in match.groups())
            seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    else:
        raise ValueError(f"{_DURATION_FORM}, got {type(value).__name__}")
    if seconds <= 0:
        raise ValueError(f"duration must be more than 0, got {value!r}; {_DURATION_FORM}")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes in "16Gi" (binary), "16G"/"16gb" (decimal), "512Mi" or "1024" (bytes); must be > 0."""
    _reject_bool(value, _SIZE_FORM)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.match(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size; {_SIZE_FORM}")
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"{_SIZE_FORM}, got {type(value).__name__}")
    if size <= 0:
        raise ValueError(f"size must be more than 0, got {value!r}; {_SIZE_FORM}")
    return size


def _gpu_count(text: str, original: object) -> int:
    """The COUNT part, kept separate so "A100:x" and "0" get the same message."""
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"GPU count must be a whole number of at least 1, got {original!r}; {_GPU_FORM}")
    return int(text)


def parse_gpu(value: str | int) -> GpuRequest:
    """A GpuRequest from "A100:2", "A100", 2 or "2"."""
    _reject_bool(value, _GPU_FORM)
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"GPU count must be at least 1, got {value}; {_GPU_FORM}")
        return GpuRequest(count=value)
    if not isinstance(value, str):
        raise ValueError(f"{_GPU_FORM}, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError(f"empty GPU request; {_GPU_FORM}")
    if text.isdigit() or text.startswith("-"):
        return GpuRequest(count=_gpu_count(text, value))
    gpu_type, sep, count_text = text.partition(":")
    if not _GPU_TYPE_RE.match(gpu_type):
        raise ValueError(f"{value!r} is not a GPU request; {_GPU_FORM}")
    count = _gpu_count(count_text, value) if sep else 1
    return GpuRequest(type=gpu_type, count=count)
