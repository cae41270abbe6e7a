"""Packages that publish no wheel (only a source distribution), against the real index and engine.

hydra-core 1.3 needs antlr4-python3-runtime 4.9.3, which PyPI has as an sdist only; pickle-mixin is
another. The lock builds each into a wheel with the clock fixed, the image installs that wheel
offline, and a machine without it in its cache builds the same bytes again.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import pytest

from devenv.build.project import build_project, lock_project, open_project
from devenv.build.runner import run_once
from devenv.errors import LockError
from devenv.lock.models import BaseImage, PythonPackage, Wheel
from devenv.lock.python import platform_tags, resolve_python
from devenv.lock.sdists import ensure_built, is_built
from devenv.resources import artifact_path
from devenv.testing.projects import copy_template

SOURCE_ONLY = {"antlr4-python3-runtime": "4.9.3", "pickle-mixin": "1.0.2"}
LINKED = {"psycopg2": "2.9.6"}  # sdist only on Linux; compiles against libpq (libpq-dev here, setup.sh installs it)
RANKING = {tag: index for index, tag in enumerate(platform_tags("3.11", "x86_64", "2.36"))}


def resolve_for_311(requirements: Path, exclude_newer: str, moved: dict[str, str] | None = None) -> list[PythonPackage]:
    """The lock's Python resolution of one requirements file for the cpu base's platform (3.11, glibc 2.36)."""
    return resolve_python(
        [requirements],
        [],
        python="3.11",
        arch="x86_64",
        glibc="2.36",
        exclude_newer=exclude_newer,
        root=requirements.parent,
        moved=moved,
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DEVENV_CACHE_DIR", str(folder))  # an empty cache: nothing built before this test
    return folder


def test_source_only_packages_are_built_locked_installed_and_rebuilt_the_same(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path: Path, cache: Path
) -> None:
    spec_path = copy_template("minimal", tmp_path / "project", project_name="it-sdist")
    (spec_path.parent / "requirements.in").write_text(
        "".join(f"{name}=={version}\n" for name, version in {**SOURCE_ONLY, **LINKED}.items())
    )
    subprocess.run(["git", "init", "-q", str(spec_path.parent)], check=True)
    project = open_project(spec_path)
    lock, _ = lock_project(client, project)

    built = {p.name: p for p in lock.python if p.sdist is not None}
    assert set(built) == {*SOURCE_ONLY, *LINKED}
    for name, package in built.items():
        assert package.version == {**SOURCE_ONLY, **LINKED}[name]
        assert package.sdist is not None and package.sdist.filename.endswith(".tar.gz")
        assert package.wheel.filename.endswith(
            "-py3-none-any.whl" if name in SOURCE_ONLY else "-cp311-cp311-linux_x86_64.whl"
        )
        assert package.wheel.url == package.sdist.url and package.wheel.sha256 != package.sdist.sha256
        assert is_built(package)
    assert all(p.sdist is None for p in lock.python if p.name not in built)
    # psycopg2's wheel, built here, links to libpq.so.5: the lock adds the package holding it (the spec names no apt)
    assert project.spec.apt == [] and "libpq5" in {package.name for package in lock.apt}
    assert "sdist:" in project.lock_path.read_text()

    result = build_project(client, project)
    try:
        out, err = io.BytesIO(), io.BytesIO()
        check = "import antlr4, pickle_mixin, psycopg2; print('imported')"
        code = run_once(client, result.tag, ["python", "-c", check], network=False, out=out, err=err)
        assert code == 0, err.getvalue().decode()
        assert out.getvalue().decode().strip() == "imported"
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(result.tag, force=True)

    # another machine (an empty cache): the wheel is built again, to the bytes the lock names
    antlr = built["antlr4-python3-runtime"]
    wheel_file = artifact_path(cache / "wheels", antlr.wheel.sha256, antlr.wheel.filename)
    first = wheel_file.read_bytes()
    wheel_file.unlink()
    assert not is_built(antlr)
    ensure_built(antlr, python="3.11", ranking=RANKING, glibc="2.36", resolved_at=lock.resolved_at)
    assert wheel_file.read_bytes() == first

    # a lock naming other bytes than the source builds to is refused, at lock level and by the build
    forged = antlr.model_copy(
        update={"wheel": Wheel(filename=antlr.wheel.filename, url=antlr.wheel.url, sha256="0" * 64)}
    )
    with pytest.raises(LockError, match=r"devenv\.lock names 0{64}"):
        ensure_built(forged, python="3.11", ranking=RANKING, glibc="2.36", resolved_at=lock.resolved_at)
    assert not artifact_path(cache / "wheels", "0" * 64, antlr.wheel.filename).exists()


def test_a_source_that_does_not_build_is_a_lock_error_naming_it(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path: Path, cache: Path
) -> None:
    spec_path = copy_template("minimal", tmp_path / "project", project_name="it-sdist-bad")
    # mysqlclient publishes wheels for Windows only; its source needs MySQL's headers, which this host lacks
    (spec_path.parent / "requirements.in").write_text("mysqlclient==2.2.4\n")
    subprocess.run(["git", "init", "-q", str(spec_path.parent)], check=True)
    project = open_project(spec_path)
    lock_before = project.lock_path.read_bytes() if project.lock_path.exists() else None
    with pytest.raises(LockError) as caught:
        lock_project(client, project)
    assert "mysqlclient" in caught.value.message and "no wheel for Python 3.11" in caught.value.message
    assert caught.value.hint is not None and "pin a version of mysqlclient" in caught.value.hint
    after = project.lock_path.read_bytes() if project.lock_path.exists() else None
    assert after == lock_before  # a failed lock leaves the lock file as it was


def test_an_old_pin_without_a_wheel_for_this_python_names_the_nearest_release_with_one(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas==1.0.3\n")  # compiled wheels for Python 3.5-3.8 only: not built here
    with pytest.raises(LockError) as caught:
        resolve_for_311(requirements, "2026-01-01T00:00:00Z")
    assert caught.value.message == (
        "pandas==1.0.3 publishes no wheel for Python 3.11 on this platform; "
        "pandas==1.5.0 is the nearest release that does"
    )
    assert caught.value.hint is not None and caught.value.hint.startswith("pin pandas==1.5.0 (or later)")
    assert "old_pins: move" in caught.value.hint


def test_old_pins_move_to_the_nearest_release_with_a_wheel_seen_by_the_snapshot(tmp_path: Path) -> None:
    """A Python 3.8 freeze: each compiled pin without a cp311 wheel moves, companions too (pandas 1.5.0 needs a
    newer numpy than 1.19.5, which has none either); what had a wheel stays; the moves are named."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas==1.0.3\nnumpy==1.19.5\nsix==1.15.0\n")
    moved: dict[str, str] = {}
    locked = {p.name: p.version for p in resolve_for_311(requirements, "2023-06-01T23:59:59Z", moved=moved)}
    assert moved == {"pandas": "1.0.3 -> 1.5.0", "numpy": "1.19.5 -> 1.23.2"}
    assert locked["pandas"] == "1.5.0" and locked["numpy"] == "1.23.2" and locked["six"] == "1.15.0"
    # the nearest release is looked for in the index the lock sees (pandas 1.5.0 came on 2022-09-19), and a
    # compiled project is never built from its source instead
    moved.clear()
    started = time.perf_counter()
    with pytest.raises(LockError) as caught:
        resolve_for_311(requirements, "2022-09-01T00:00:00Z", moved=moved)
    assert caught.value.message.endswith(
        "pandas==1.5.0 is the nearest release that does, but it came after the index the lock reads (2022-09-01)"
    )
    assert "requirements_as_of" in (caught.value.hint or "") and moved == {}
    assert time.perf_counter() - started < 30  # no numpy or pandas compile was tried (a minute or more)


def test_a_pure_python_pin_without_a_wheel_is_built_though_later_releases_have_one(tmp_path: Path, cache: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("omegaconf==2.3.0\n")  # pins antlr4-python3-runtime==4.9.*: sdist only; 4.11+ has wheels
    locked = {p.name: p for p in resolve_for_311(requirements, "2026-01-01T00:00:00Z")}
    antlr = locked["antlr4-python3-runtime"]
    assert antlr.version == "4.9.3" and antlr.sdist is not None and is_built(antlr)


def test_an_old_pin_uv_reports_by_abi_tag_moves_too(tmp_path: Path) -> None:
    """uv words it two ways ("has no usable wheels", "has no wheels with a matching Python ABI tag"): both move
    (opencv-python 4.1.2.30, a CompVis pin, has cp38 wheels at most)."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("opencv-python==4.1.2.30\n")
    moved: dict[str, str] = {}
    locked = {p.name: p.version for p in resolve_for_311(requirements, "2023-06-01T23:59:59Z", moved=moved)}
    assert moved == {"opencv-python": f"4.1.2.30 -> {locked['opencv-python']}"}
    assert locked["opencv-python"] != "4.1.2.30"
