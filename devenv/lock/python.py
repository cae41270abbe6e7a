"""Resolving Python requirements to one exact, hashed wheel per package for the image's platform.

uv resolves for the target interpreter and platform (not the host's) and writes a PEP 751
pylock.toml listing every compatible wheel; we keep the single wheel pip would pick inside the
image, so the lock names the exact artifact installed. `exclude_newer` freezes the index view,
which makes re-locking the same inputs produce the same bytes. Wheels are required, except for a
package uv names as having none: its source distribution is allowed and built (`lock.sdists`).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.utils import parse_wheel_filename

from devenv.errors import LockError
from devenv.lock.models import PythonPackage, Sdist, Wheel
from devenv.lock.sdists import build_wheel, nearest_with_wheel
from devenv.lock.uv import uv_binary
from devenv.requirements import requirement_problems

MAX_DETAIL = 4000  # characters of uv's message shown: the end, where the cause is
MAX_SOURCE_ROUNDS = 8  # resolutions, each allowing the source of the packages the last one named
MAX_MOVES = 40  # old pins moved to a release with a wheel (old_pins: move), one resolution each
_WHEELS_REQUIRED = re.compile(r"Wheels are required for `([^`]+)`")
# uv's words for "this pinned release has wheels, none for this interpreter" (both phrasings seen)
_NO_WHEEL_PIN = re.compile(
    r"Because ([A-Za-z0-9._-]+)==([^\s,]+) has no (?:usable wheels|wheels with a matching Python (?:ABI|version) tag)"
)
_REQUIRED_PIN = re.compile(r"you require ([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)")


def platform_tags(python: str, arch: str, glibc: str) -> list[tags.Tag]:
    """Wheel tags the image's interpreter accepts, best first (what pip computes inside it)."""
    major, minor = (int(part) for part in python.split("."))
    glibc_major, glibc_minor = (int(part) for part in glibc.split("."))
    platforms = [f"manylinux_{glibc_major}_{m}_{arch}" for m in range(glibc_minor, 16, -1)]
    legacy = {"x86_64": ["manylinux2014", "manylinux2010", "manylinux1"], "aarch64": ["manylinux2014"]}
    platforms += [f"{name}_{arch}" for name in legacy.get(arch, [])]
    platforms.append(f"linux_{arch}")
    interpreter = f"cp{major}{minor}"
    ordered = list(tags.cpython_tags((major, minor), abis=[interpreter, "abi3", "none"], platforms=platforms))
    ordered += list(tags.compatible_tags((major, minor), interpreter, platforms))
    return ordered


def platform_ranking(python: str, arch: str, glibc: str) -> dict[tags.Tag, int]:
    """Each tag the image accepts, with its rank (0 is pip's first choice)."""
    return {tag: index for index, tag in enumerate(platform_tags(python, arch, glibc))}


def _check_confined(root: Path, requirement_files: list[Path]) -> None:
    names = []
    for path in requirement_files:
        try:
            names.append(path.relative_to(root).as_posix())
        except ValueError:
            raise LockError(f"{path.name}: a requirements file must be inside the project folder") from None
    problems = requirement_problems(root, names)
    if problems:
        lines = [f"{p.file}:{p.line}: {p.message}" if p.line else f"{p.file}: {p.message}" for p in problems]
        raise LockError(
            "requirement files ask for what devenv does not read:\n" + "\n".join(lines),
            hint="a requirements file names packages, http(s) indexes and other files of the project",
        )


def _tidy(detail: str, folders: list[Path | None]) -> str:
    """uv's message with the daemon's folders dropped from paths (files are named as in the project), cut to its end."""
    for folder in folders:
        if folder is not None:
            detail = detail.replace(f"{folder}/", "").replace(str(folder), ".")
    return detail if len(detail) <= MAX_DETAIL else "..." + detail[-MAX_DETAIL:]


def _best_wheel(name: str, wheels: list[dict], ranking: dict[tags.Tag, int]) -> Wheel:
    best: tuple[int, dict] | None = None
    for wheel in wheels:
        filename = wheel["url"].rsplit("/", 1)[-1]
        _, _, _, wheel_tags = parse_wheel_filename(filename)
        rank = min((ranking[t] for t in wheel_tags if t in ranking), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, wheel)
    if best is None:
        raise LockError(
            f"no wheel of {name} fits the image's platform", hint="pin a version that publishes a manylinux wheel"
        )
    chosen = best[1]
    return Wheel(
        filename=chosen["url"].rsplit("/", 1)[-1],
        url=chosen["url"],
        sha256=chosen["hashes"]["sha256"],
        size=chosen.get("size"),
    )


def resolve_python(
    requirement_files: list[Path],
    extra: list[str],
    *,
    python: str,
    arch: str,
    glibc: str,
    exclude_newer: str,
    root: Path | None = None,
    as_of: str | None = None,
    moved: dict[str, str] | None = None,
) -> list[PythonPackage]:
    """Resolve to exact versions with the hash of one wheel each, sorted by name.

    `root`: the project folder. Its requirement files are checked first (lines that would make uv read
    outside it are refused, by file and line), and uv's messages name files relative to it. `as_of`: the spec's
    requirements_as_of behind `exclude_newer`, named in the error when nothing fits. `moved`: when given (the
    spec's `old_pins: move`), an exact pin with no wheel for this Python moves to the nearest release that has one
    (an override), and the dict gets name -> "OLD -> NEW" for each; otherwise such a pin stops the lock."""
    if not requirement_files and not extra:
        return []
    if root is not None:
        _check_confined(root, requirement_files)
    with tempfile.TemporaryDirectory(prefix="devenv-lock-") as tmp:
        inputs = [str(path) for path in requirement_files]
        if extra:
            extra_file = Path(tmp) / "devenv-extra.in"
            extra_file.write_text("\n".join(extra) + "\n")
            inputs.append(str(extra_file))
        output = Path(tmp) / "pylock.toml"
        ranking = platform_ranking(python, arch, glibc)
        from_source: list[str] = []
        overrides: dict[str, str] = {}  # name -> the version an old pin moved to
        override_file = Path(tmp) / "devenv-overrides.txt"
        rounds = 0
        while rounds < MAX_SOURCE_ROUNDS:
            rounds += 1
            if overrides:
                override_file.write_text("".join(f"{name}=={version}\n" for name, version in overrides.items()))
            command = _compile_command(
                inputs,
                override_file if overrides else None,
                from_source,
                python=python,
                arch=arch,
                glibc=glibc,
                exclude_newer=exclude_newer,
                output=output,
            )
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            detail = result.stderr.strip() or result.stdout.strip()
            wheel_less = [name for name in _WHEELS_REQUIRED.findall(detail) if name not in from_source]
            if result.returncode == 0:
                break
            old = _old_binary_pin(detail, python, ranking, exclude_newer)
            if old is None and overrides:  # a moved pin needs newer companions: move those made for the old Python
                old = _conflicting_old_pin(detail, ranking, exclude_newer, set(overrides))
            if old is not None and moved is not None and old[0] not in overrides and len(overrides) < MAX_MOVES:
                name, version, nearest = old
                overrides[name] = nearest
                moved[name] = f"{version} -> {nearest}"
                rounds -= 1  # a move is not a source round
                continue
            if old is not None:
                name, version, nearest = old
                raise LockError(
                    f"{name}=={version} publishes no wheel for Python {python} on this platform; "
                    f"{name}=={nearest} is the nearest release that does",
                    hint=f"pin {name}=={nearest} (or later) in your requirements, or set `old_pins: "
                    "move` in devenv.yaml to move every such pin; then `devenv lock`",
                )
            if not wheel_less:
                break
            from_source += wheel_less
        if result.returncode != 0:
            raise _unresolved(_tidy(detail, [root, Path(tmp)]), from_source, python=python, as_of=as_of)
        document = tomllib.loads(output.read_text())
    return _packages(document, python=python, ranking=ranking, glibc=glibc, resolved_at=exclude_newer)


def _compile_command(
    inputs: list[str],
    overrides: Path | None,
    from_source: list[str],
    *,
    python: str,
    arch: str,
    glibc: str,
    exclude_newer: str,
    output: Path,
) -> list[str]:
    """uv's resolution for the image's platform, wheels only but for the packages that publish none."""
    return [
        uv_binary(),
        "pip",
        "compile",
        *inputs,
        *(["--override", str(overrides)] if overrides is not None else []),
        "--python-version",
        python,
        "--python-platform",
        f"{arch}-manylinux_{glibc.replace('.', '_')}",
        "--only-binary",
        ":all:",
        *(option for name in from_source for option in ("--no-binary", name)),
        "--exclude-newer",
        exclude_newer,
        "--no-header",
        "--quiet",
        "--no-config",
        "-o",
        str(output),
    ]


def _unresolved(detail: str, from_source: list[str], *, python: str, as_of: str | None) -> LockError:
    """uv's words, with what devenv tried and what to change."""
    tried = ""
    hint = "fix the named requirement in your requirements file, then `devenv lock`"
    if from_source:
        names = ", ".join(from_source)
        tried = f" ({names}: no wheel for Python {python}, so its source distribution was tried)"
        hint = f"pin a version of {names} that publishes a wheel for Python {python}, or " + hint
    if as_of:
        hint += (
            f"; the index is read as it stood on {as_of} (requirements_as_of in devenv.yaml): a release "
            "made later is not seen, so move that day later or remove the field"
        )
    return LockError(f"could not resolve Python requirements{tried}:\n{detail}", hint=hint)


def _packages(
    document: dict[str, Any], *, python: str, ranking: dict[tags.Tag, int], glibc: str, resolved_at: str
) -> list[PythonPackage]:
    """pylock.toml's packages, one wheel each (the best for the platform), or a wheel built from an sdist."""
    packages: list[PythonPackage] = []
    for entry in document.get("packages", []):
        name, version = entry["name"], entry.get("version")
        wheels, sdist = entry.get("wheels") or [], entry.get("sdist")
        if version is not None and not wheels and sdist is not None:
            packages.append(
                _from_source(name, version, sdist, python=python, ranking=ranking, glibc=glibc, resolved_at=resolved_at)
            )
            continue
        if version is None or not wheels:
            raise LockError(
                f"{name} resolved to a source without a wheel",
                hint="devenv installs wheels only, offline; pin a version with a wheel",
            )
        packages.append(PythonPackage(name=name, version=version, wheel=_best_wheel(name, wheels, ranking)))
    return sorted(packages, key=lambda package: package.name)


def _old_binary_pin(detail: str, python: str, ranking: dict[tags.Tag, int], before: str) -> tuple[str, str, str] | None:
    """(name, version, nearest) for a pin of a project that publishes compiled wheels, only not for this Python
    (numpy==1.21.6 on 3.11), with the nearest release that has one: such a pin is moved or refused rather than
    compiled here, since its source rarely builds on a newer Python and a numpy or scipy build takes many minutes.
    None for a pure-Python one (antlr4-python3-runtime==4.9.3, which omegaconf pins): it is built from its sdist."""
    pinned = _NO_WHEEL_PIN.search(" ".join(detail.split()))  # uv wraps its lines to the terminal
    if pinned is None:  # "all versions of X have no usable wheels": a source-only project, built from its sdist
        return None
    name, version = pinned.groups()
    nearest = nearest_with_wheel(name, version, ranking, compiled=True, before=before)
    if nearest is not None:
        return name, version, nearest
    later = nearest_with_wheel(name, version, ranking, compiled=True)
    if later is not None:  # compiled, and only releases after the index the lock reads fit: never compile it here
        raise LockError(
            f"{name}=={version} publishes no wheel for Python {python} on this platform; {name}=={later} "
            f"is the nearest release that does, but it came after the index the lock reads "
            f"({before[:10]})",
            hint="move requirements_as_of in devenv.yaml later (or remove it) and "
            "`devenv lock`, or `devenv lock --upgrade` for today's index",
        )
    return None


def _conflicting_old_pin(
    detail: str, ranking: dict[tags.Tag, int], before: str, moved: set[str]
) -> tuple[str, str, str] | None:
    """A pin a moved one conflicts with ("you require numpy==1.19.5"), when it too publishes no compiled wheel for
    this Python: (name, version, nearest). A pin that has one is a real conflict, left to the error."""
    for name, version in _REQUIRED_PIN.findall(" ".join(detail.split())):
        version = version.rstrip(".,")
        if name in moved:
            continue
        nearest = nearest_with_wheel(name, version, ranking, compiled=True, before=before)
        if nearest is not None and nearest != version:
            return name, version, nearest
    return None


def _from_source(
    name: str, version: str, sdist: dict, *, python: str, ranking: dict[tags.Tag, int], glibc: str, resolved_at: str
) -> PythonPackage:
    """A package that publishes no fitting wheel, with the wheel built from its sdist (now, in the cache)."""
    url = sdist["url"]
    source = Sdist(filename=url.rsplit("/", 1)[-1], url=url, sha256=sdist["hashes"]["sha256"], size=sdist.get("size"))
    wheel = build_wheel(name, version, source, python=python, ranking=ranking, glibc=glibc, resolved_at=resolved_at)
    return PythonPackage(name=name, version=version, wheel=wheel, sdist=source)
