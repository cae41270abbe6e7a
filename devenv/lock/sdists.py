"""Wheels built from source distributions, for packages that publish no wheel (antlr4-python3-runtime, ...).

The image installs wheels only, offline. A package that ships only an sdist is built into a wheel on
the host when it is locked, with the build's clock fixed to the lock's `resolved_at`
(SOURCE_DATE_EPOCH) and its build dependencies from the same index snapshot, so a rebuild gives the
same bytes; the lock records the sdist's hash and the built wheel's. The wheel waits in the
content-addressed cache for the image build; a machine without it builds it again and must arrive
at the locked hash.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging import tags
from packaging.utils import parse_wheel_filename

from devenv.download import DigestMismatch, DownloadFailed, download_verified
from devenv.errors import LockError
from devenv.lock.models import PythonPackage, Sdist, Wheel
from devenv.lock.uv import uv_binary
from devenv.resources import artifact_path, cache_dir

BUILD_TIMEOUT_S = 900
MAX_DETAIL = 2000


def epoch(resolved_at: str) -> int:
    """SOURCE_DATE_EPOCH for a lock's `resolved_at` (an ISO-8601 UTC time)."""
    return int(dt.datetime.fromisoformat(resolved_at.replace("Z", "+00:00")).timestamp())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as content:
        for chunk in iter(lambda: content.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_sdist(sdist: Sdist, cache: Path) -> Path:
    import httpx

    target = artifact_path(cache / "sdists", sdist.sha256, sdist.filename)
    if target.is_file():
        return target
    try:
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0)) as client:
            download_verified(client, sdist.url, sdist.sha256, target)
    except DownloadFailed as exc:
        raise LockError(
            f"could not fetch {sdist.filename} from {sdist.url}: {exc}",
            hint="check the network and run `devenv lock` again",
        ) from exc
    except DigestMismatch as exc:
        raise LockError(
            f"{sdist.filename} from {sdist.url} has sha256 {exc.found}, but the index named {sdist.sha256}",
            hint="the index sent other bytes than it listed; do not use it until you know why",
        ) from None
    return target


def nearest_with_wheel(
    name: str, version: str, ranking: dict[tags.Tag, int], *, compiled: bool = False, before: str | None = None
) -> str | None:
    """The release of `name` nearest from `version` up (else the newest) with a wheel the image takes, from PyPI;
    with `compiled`, only a platform wheel counts (the project compiles code); with `before` (an ISO time, the
    lock's index snapshot), only a wheel uploaded by then.

    Advice, never a pin: any failure to ask (another index, no network) gives None."""
    from packaging.version import InvalidVersion, Version

    releases = _releases(name)
    try:
        pinned = Version(version)
        cutoff = dt.datetime.fromisoformat(before.replace("Z", "+00:00")) if before else None
    except (ValueError, InvalidVersion):
        return None
    fitting = []
    for text, files in releases.items():
        try:
            candidate = Version(text)
        except InvalidVersion:
            continue
        if candidate.is_prerelease or not isinstance(files, list):
            continue
        for file in files:
            filename = file.get("filename", "") if isinstance(file, dict) else ""
            if filename.endswith(".whl") and not file.get("yanked") and _uploaded_by(file, cutoff):
                try:
                    wheel_tags = parse_wheel_filename(filename)[3]
                except ValueError:
                    continue
                pure = all(tag.platform == "any" for tag in wheel_tags)
                if any(tag in ranking for tag in wheel_tags) and not (compiled and pure):
                    fitting.append(candidate)
                    break
    above = sorted(v for v in fitting if v >= pinned)
    if above:
        return str(above[0])
    return str(max(fitting)) if fitting else None


@functools.lru_cache(maxsize=256)
def _releases(name: str) -> dict:
    """PyPI's release -> files map of `name` (asked once per process); empty when it cannot be asked."""
    import httpx

    try:
        answer = httpx.get(f"https://pypi.org/pypi/{name}/json", timeout=10.0, follow_redirects=True)
        answer.raise_for_status()
        releases = answer.json().get("releases", {})
    except (httpx.HTTPError, ValueError):
        return {}
    return releases if isinstance(releases, dict) else {}


def _uploaded_by(file: dict, cutoff: dt.datetime | None) -> bool:
    if cutoff is None:
        return True
    try:
        return dt.datetime.fromisoformat(str(file.get("upload_time_iso_8601", "")).replace("Z", "+00:00")) <= cutoff
    except ValueError:
        return False


def _interpreter(python: str) -> str:
    """A host interpreter of the image's Python version: uv finds one (never downloads it); else this one."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    return python


def _accepted(filename: str, python: str, ranking: dict[tags.Tag, int], image_glibc: str) -> str | None:
    """Why the built wheel cannot go into the image, or None when it can."""
    _, _, _, wheel_tags = parse_wheel_filename(filename)
    if not any(tag in ranking for tag in wheel_tags):
        return f"the built wheel {filename} does not fit the image (Python {python})"
    if all(tag.platform == "any" for tag in wheel_tags):
        return None
    host_glibc = platform.libc_ver()[1] or "0"
    if tuple(int(p) for p in host_glibc.split(".")[:2]) > tuple(int(p) for p in image_glibc.split(".")[:2]):
        return (
            f"it compiles code, and this host's C library (glibc {host_glibc}) is newer than the image's "
            f"(glibc {image_glibc}), so the compiled wheel might not load there"
        )
    return None


def build_wheel(
    name: str,
    version: str,
    sdist: Sdist,
    *,
    python: str,
    ranking: dict[tags.Tag, int],
    glibc: str,
    resolved_at: str,
    cache: Path | None = None,
) -> Wheel:
    """Build `sdist` (of `name` `version`) into a wheel in the cache; the Wheel names its file and hash."""
    cache = cache or cache_dir()
    source = _fetch_sdist(sdist, cache)
    pin_hint = f"pin a version of {name} that publishes a wheel for Python {python}"
    with tempfile.TemporaryDirectory(prefix="devenv-sdist-") as tmp:
        out = Path(tmp) / "out"
        environment = {
            **os.environ,
            "SOURCE_DATE_EPOCH": str(epoch(resolved_at)),
            "UV_PYTHON_DOWNLOADS": "never",
            "PYTHONHASHSEED": "0",
        }
        # not --quiet: when the build fails, the backend's own output says why
        command = [
            uv_binary(),
            "build",
            "--wheel",
            str(source),
            "--out-dir",
            str(out),
            "--python",
            _interpreter(python),
            "--exclude-newer",
            resolved_at,
            "--no-config",
        ]
        try:
            built = subprocess.run(
                command, capture_output=True, text=True, env=environment, check=False, timeout=BUILD_TIMEOUT_S, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            raise LockError(
                f"{name} {version} publishes no wheel, and building its source took "
                f"over {BUILD_TIMEOUT_S // 60} minutes",
                hint=pin_hint,
            ) from None
        wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
        if built.returncode != 0 or len(wheels) != 1:
            output = f"{built.stdout.strip()}\n{built.stderr.strip()}".strip()
            detail = output.replace(str(source), source.name).replace(tmp, ".")[-MAX_DETAIL:]
            nearest = nearest_with_wheel(name, version, ranking)
            if nearest is not None:
                pin_hint += f" ({name}=={nearest} is the nearest that does)"
            raise LockError(
                f"{name} {version} publishes no wheel for Python {python}, and its "
                f"source distribution did not build:\n{detail}",
                hint=pin_hint,
            )
        refused = _accepted(wheels[0].name, python, ranking, glibc)
        if refused is not None:
            raise LockError(f"{name} {version} publishes no wheel for Python {python}: {refused}", hint=pin_hint)
        digest = _sha256(wheels[0])
        target = artifact_path(cache / "wheels", digest, wheels[0].name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(wheels[0], target)
    return Wheel(filename=target.name, url=sdist.url, sha256=digest, size=target.stat().st_size)


def wheel_path(package: PythonPackage, cache: Path | None = None) -> Path:
    """Where the wheel the lock names for `package` lies in the cache (built here from its sdist, or fetched)."""
    return artifact_path((cache or cache_dir()) / "wheels", package.wheel.sha256, package.wheel.filename)


def is_built(package: PythonPackage, cache: Path | None = None) -> bool:
    """Whether the wheel the lock names for `package` is in the cache."""
    return wheel_path(package, cache).is_file()


def ensure_built(
    package: PythonPackage,
    *,
    python: str,
    ranking: dict[tags.Tag, int],
    glibc: str,
    resolved_at: str,
    cache: Path | None = None,
) -> None:
    """Make sure the locked wheel built from `package.sdist` is in the cache, building it again if need be.

    A rebuild that gives other bytes than the lock names is refused: the image would not be the one locked."""
    assert package.sdist is not None
    cache = cache or cache_dir()
    if is_built(package, cache):
        return
    rebuilt = build_wheel(
        package.name,
        package.version,
        package.sdist,
        python=python,
        ranking=ranking,
        glibc=glibc,
        resolved_at=resolved_at,
        cache=cache,
    )
    if rebuilt.sha256 != package.wheel.sha256:
        raise LockError(
            f"{package.name} {package.version} was built from its source again and gave "
            f"{rebuilt.filename} with sha256 {rebuilt.sha256}, "
            f"but devenv.lock names {package.wheel.sha256}",
            hint="its build is not reproducible on this machine: build where it was locked, "
            "or run `devenv lock --upgrade` here",
        )
