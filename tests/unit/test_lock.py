"""devenv.lock: the lock file (round trip, determinism, errors, checks), apt parsing, wheel tags, hashes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import Tag

from devenv.errors import LockError, LockMismatch, LockMissing
from devenv.lock.apt import parse_resolution
from devenv.lock.lockfile import check_lock, differences, dump_lock, read_lock, write_lock
from devenv.lock.models import LOCK_FILENAME, AptPackage, BaseImage, Lock, LockInputs, PythonPackage, Wheel
from devenv.lock.python import _best_wheel, platform_tags

DATA = Path(__file__).parent / "data"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha(seed: str) -> str:
    """A deterministic, distinct 64-hex digest per seed."""
    import hashlib

    return hashlib.sha256(seed.encode()).hexdigest()


def inputs_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "base": "cpu",
        "python": "3.11",
        "platform": "x86_64-manylinux_2_36",
        "apt": ["curl", "git"],
        "requirements": {"requirements.in": sha("requirements.in"), "dev.in": sha("dev.in")},
        "extra_python": ["ipykernel>=6.29"],
        "tooling": ["jupyterlab>=4.2,<5"],
    }
    data.update(changes)
    return data


def python_package(name: str, version: str, *, tag: str = "py3-none-any") -> dict[str, Any]:
    filename = f"{name}-{version}-{tag}.whl"
    return {
        "name": name,
        "version": version,
        "wheel": {
            "filename": filename,
            "url": f"https://files.pythonhosted.org/packages/ab/cd/{filename}",
            "sha256": sha(filename),
            "size": 12345,
        },
    }


def apt_package(name: str, version: str) -> dict[str, Any]:
    filename = f"{name}_{version}_amd64.deb"
    return {
        "name": name,
        "version": version,
        "arch": "amd64",
        "filename": filename,
        "url": f"http://deb.debian.org/debian/pool/main/{name[0]}/{name}/{filename}",
        "sha256": sha(filename),
        "size": 4096,
    }


def lock_data() -> dict[str, Any]:
    return {
        "resolved_at": "2024-06-01T12:00:00Z",
        "inputs": inputs_data(),
        "base": {
            "recipe": "cpu",
            "image": "devenv/base:cpu-0123456789ab",
            "digest": "sha256:" + sha("base"),
            "source": "bootstrap",
            "upstream": "docker.io/library/debian:bookworm-slim@sha256:" + sha("upstream"),
            "python": "3.11",
        },
        "apt": [apt_package("curl", "7.88.1-10+deb12u15"), apt_package("git", "1:2.39.5-0+deb12u2")],
        "python": [
            python_package("numpy", "2.0.0", tag="cp311-cp311-manylinux_2_17_x86_64"),
            python_package("rich", "13.7.1"),
        ],
        "tooling": [python_package("jupyterlab", "4.2.3")],
    }


def make_lock(data: dict[str, Any] | None = None) -> Lock:
    """A Lock built field by field from the models (not via model_validate of a dump)."""
    data = data if data is not None else lock_data()
    return Lock(
        resolved_at=data["resolved_at"],
        inputs=LockInputs(**data["inputs"]),
        base=BaseImage(**data["base"]),
        apt=[AptPackage(**item) for item in data["apt"]],
        python=[PythonPackage(name=p["name"], version=p["version"], wheel=Wheel(**p["wheel"])) for p in data["python"]],
        tooling=[
            PythonPackage(name=p["name"], version=p["version"], wheel=Wheel(**p["wheel"])) for p in data["tooling"]
        ],
    )


# ---- lock file: round trip and determinism ----


def test_round_trip(tmp_path: Path) -> None:
    lock = make_lock()
    path = tmp_path / LOCK_FILENAME
    write_lock(lock, path)
    assert read_lock(path) == lock
    assert path.read_text() == dump_lock(lock)
    assert not path.with_name(path.name + ".tmp").exists()


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    lock = make_lock()
    path = tmp_path / LOCK_FILENAME
    write_lock(lock, path)
    again = read_lock(path)
    assert again.model_dump() == lock.model_dump()
    assert again.apt[1].version == "1:2.39.5-0+deb12u2"
    assert again.python[0].wheel.size == 12345
    assert again.content_hash() == lock.content_hash()


def test_dump_is_deterministic() -> None:
    lock = make_lock()
    assert dump_lock(lock) == dump_lock(lock)
    assert dump_lock(make_lock()) == dump_lock(make_lock())
    # model_validate from plain data gives the same text as building with the models
    assert dump_lock(Lock.model_validate(lock_data())) == dump_lock(lock)


def test_dump_starts_with_header_and_has_model_key_order() -> None:
    text = dump_lock(make_lock())
    assert text.startswith("# devenv.lock")
    keys = [line.split(":")[0] for line in text.splitlines() if re.match(r"^[a-z_]+:", line)]
    assert keys == ["version", "resolved_at", "inputs", "base", "apt", "python", "tooling"]


def test_dump_of_the_written_file_is_stable_across_rewrites(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILENAME
    write_lock(make_lock(), path)
    first = path.read_bytes()
    write_lock(read_lock(path), path)
    assert path.read_bytes() == first


def test_equal_locks_dump_to_the_same_bytes() -> None:
    data = lock_data()
    reordered = lock_data()
    reordered["inputs"]["requirements"] = dict(reversed(list(data["inputs"]["requirements"].items())))
    first, second = make_lock(data), make_lock(reordered)
    assert first == second
    assert first.content_hash() == second.content_hash()
    assert dump_lock(first) == dump_lock(second)


# ---- lock file: errors ----


def test_missing_lock_raises_lock_missing_with_hint(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILENAME
    with pytest.raises(LockMissing) as caught:
        read_lock(path)
    assert str(path) in caught.value.message
    assert caught.value.hint is not None
    assert "devenv lock" in caught.value.hint
    assert "devenv lock" in caught.value.render()


def test_directory_instead_of_lock_is_missing(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILENAME
    path.mkdir()
    with pytest.raises(LockMissing):
        read_lock(path)


@pytest.mark.parametrize(
    "text",
    [
        "{{{{ not yaml",
        "inputs: [unclosed\n",
        "key: value\n  bad indent: here\n",
        "\t- tab\n",
        "",
        "just a string\n",
        "- a\n- list\n",
        "version: 1\n",
        "version: 1\nresolved_at: x\ninputs: {}\nbase: {}\napt: []\npython: []\ntooling: []\n",
    ],
)
def test_garbage_or_wrong_shape_raises_lock_missing(tmp_path: Path, text: str) -> None:
    path = tmp_path / LOCK_FILENAME
    path.write_text(text)
    with pytest.raises(LockMissing) as caught:
        read_lock(path)
    assert caught.value.hint is not None
    assert "devenv lock" in caught.value.hint


def test_unknown_key_is_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILENAME
    path.write_text(dump_lock(make_lock()) + "surprise: true\n")
    with pytest.raises(LockMissing):
        read_lock(path)


def test_other_lock_version_raises_lock_missing(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILENAME
    path.write_text(dump_lock(make_lock()).replace("version: 1\n", "version: 99\n", 1))
    with pytest.raises(LockMissing) as caught:
        read_lock(path)
    assert "99" in caught.value.message


def test_binary_garbage_raises_lock_missing(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILENAME
    path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    with pytest.raises(LockMissing):
        read_lock(path)


# ---- differences and check_lock ----


def test_no_differences_for_equal_inputs() -> None:
    assert differences(LockInputs(**inputs_data()), LockInputs(**inputs_data())) == []


def test_list_order_is_not_a_difference() -> None:
    shuffled = LockInputs(**inputs_data(apt=["git", "curl"]))
    assert differences(shuffled, LockInputs(**inputs_data())) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"base": "cuda"}, ["base: spec wants 'cuda', lock has 'cpu'"]),
        ({"python": "3.12"}, ["python: spec wants '3.12', lock has '3.11'"]),
        (
            {"platform": "aarch64-manylinux_2_36"},
            ["platform: spec wants 'aarch64-manylinux_2_36', lock has 'x86_64-manylinux_2_36'"],
        ),
        ({"apt": ["curl", "git", "vim"]}, ["apt: 'vim' is in the spec but not in the lock"]),
        ({"apt": ["curl"]}, ["apt: 'git' is in the lock but no longer in the spec"]),
        (
            {"tooling": ["jupyterlab>=4.3"]},
            [
                "tooling: 'jupyterlab>=4.3' is in the spec but not in the lock",
                "tooling: 'jupyterlab>=4.2,<5' is in the lock but no longer in the spec",
            ],
        ),
        ({"tooling": []}, ["tooling: 'jupyterlab>=4.2,<5' is in the lock but no longer in the spec"]),
        ({"extra_python": []}, ["extra_python: 'ipykernel>=6.29' is in the lock but no longer in the spec"]),
        (
            {"requirements": {"requirements.in": sha("edited"), "dev.in": sha("dev.in")}},
            ["requirements: requirements.in changed since the lock was made"],
        ),
        (
            {
                "requirements": {
                    "requirements.in": sha("requirements.in"),
                    "dev.in": sha("dev.in"),
                    "new.in": sha("new"),
                }
            },
            ["requirements: new.in is not in the lock"],
        ),
        (
            {"requirements": {"requirements.in": sha("requirements.in")}},
            ["requirements: dev.in is in the lock but no longer in the spec"],
        ),
    ],
)
def test_differences_name_each_change(changes: dict[str, Any], expected: list[str]) -> None:
    spec_inputs = LockInputs(**inputs_data(**changes))
    locked = LockInputs(**inputs_data())
    assert differences(spec_inputs, locked) == expected


def test_several_differences_are_all_reported() -> None:
    spec_inputs = LockInputs(**inputs_data(python="3.12", apt=["curl"], requirements={}))
    found = differences(spec_inputs, LockInputs(**inputs_data()))
    assert len(found) == 4
    assert any(line.startswith("python:") for line in found)
    assert any(line.startswith("apt:") and "'git'" in line for line in found)
    assert sum(line.startswith("requirements:") for line in found) == 2


def test_check_lock_passes_for_matching_inputs(tmp_path: Path) -> None:
    lock = make_lock()
    check_lock(LockInputs(**inputs_data()), lock, tmp_path / LOCK_FILENAME)  # no exception


def test_check_lock_raises_mismatch_naming_the_change(tmp_path: Path) -> None:
    lock = make_lock()
    path = tmp_path / LOCK_FILENAME
    changed = LockInputs(**inputs_data(apt=["curl", "git", "ffmpeg"]))
    with pytest.raises(LockMismatch) as caught:
        check_lock(changed, lock, path)
    error = caught.value
    assert error.differences == ["apt: 'ffmpeg' is in the spec but not in the lock"]
    rendered = error.render()
    assert "'ffmpeg' is in the spec but not in the lock" in rendered
    assert str(path) in rendered
    assert "devenv lock" in rendered
    assert error.exit_code == 1


# ---- content hash ----


def _changed(mutate: Any) -> Lock:
    data = lock_data()
    mutate(data)
    return make_lock(data)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(resolved_at="2024-06-02T12:00:00Z"), id="resolved_at"),
        pytest.param(lambda d: d["base"].update(digest="sha256:" + sha("other")), id="base-digest"),
        pytest.param(lambda d: d["base"].update(image="devenv/base:cpu-ba9876543210"), id="base-image"),
        pytest.param(lambda d: d["base"].update(source="registry"), id="base-source"),
        pytest.param(lambda d: d["apt"][0].update(version="7.88.1-10+deb12u16"), id="apt-version"),
        pytest.param(lambda d: d["apt"][0].update(sha256=sha("x")), id="apt-sha"),
        pytest.param(lambda d: d["apt"].pop(), id="apt-removed"),
        pytest.param(lambda d: d["python"][1].update(version="13.7.2"), id="python-version"),
        pytest.param(lambda d: d["python"][1]["wheel"].update(sha256=sha("y")), id="wheel-sha"),
        pytest.param(lambda d: d["python"][1]["wheel"].update(url="https://mirror.example/rich.whl"), id="wheel-url"),
        pytest.param(lambda d: d["python"].append(python_package("tqdm", "4.66.4")), id="python-added"),
        pytest.param(lambda d: d["tooling"][0].update(version="4.2.4"), id="tooling-version"),
        pytest.param(lambda d: d["inputs"].update(apt=["curl"]), id="inputs-apt"),
        pytest.param(lambda d: d["inputs"]["requirements"].update({"dev.in": sha("z")}), id="inputs-requirements"),
    ],
)
def test_content_hash_changes_with_any_pin(mutate: Any) -> None:
    original = make_lock()
    changed = _changed(mutate)
    assert changed != original
    assert HEX64.match(original.content_hash())
    assert changed.content_hash() != original.content_hash()


def test_content_hash_is_stable_for_equal_locks() -> None:
    assert make_lock().content_hash() == make_lock().content_hash()
    assert make_lock().canonical_bytes() == Lock.model_validate(lock_data()).canonical_bytes()


# ---- apt resolution parsing ----


@pytest.fixture
def apt_output() -> str:
    return (DATA / "apt_resolution_curl.txt").read_text()


def test_parse_real_apt_output(apt_output: str) -> None:
    packages = parse_resolution(apt_output)
    assert len(packages) == 10
    names = [p.name for p in packages]
    assert names == sorted(names)
    assert "libcurl4" in names and "libbrotli1" in names
    curl = next(p for p in packages if p.name == "curl")
    assert curl.version == "7.88.1-10+deb12u15"
    assert curl.arch == "amd64"
    assert curl.filename == "curl_7.88.1-10+deb12u15_amd64.deb"
    assert curl.url == "http://deb.debian.org/debian/pool/main/c/curl/curl_7.88.1-10%2bdeb12u15_amd64.deb"
    assert curl.size == 315764
    assert curl.sha256 == "0dd9b6bf7a0bd11af2d68a52ec44c2a223fa7c11f9104c36ce1047e1137d4a8f"
    for package in packages:
        assert HEX64.match(package.sha256), package
        assert package.url.startswith("http"), package
        assert package.size > 0, package
        assert package.url.endswith(".deb")


def test_parse_is_independent_of_output_order(apt_output: str) -> None:
    uris, _, stanzas = apt_output.partition("--- stanzas ---")
    reversed_uris = "\n".join(reversed(uris.strip().splitlines())) + "\n"
    reversed_stanzas = "\n\n".join(reversed(stanzas.strip().split("\n\n"))) + "\n"
    assert parse_resolution(reversed_uris + "--- stanzas ---\n" + reversed_stanzas) == parse_resolution(apt_output)


def test_missing_stanza_raises_lock_error(apt_output: str) -> None:
    uris, separator, stanzas = apt_output.partition("--- stanzas ---")
    kept = [s for s in stanzas.strip().split("\n\n") if not s.startswith("Package: curl\n")]
    assert len(kept) == 9
    with pytest.raises(LockError) as caught:
        parse_resolution(uris + separator + "\n" + "\n\n".join(kept) + "\n")
    assert "curl_7.88.1-10+deb12u15_amd64.deb" in caught.value.message


def test_no_stanzas_at_all_raises_lock_error(apt_output: str) -> None:
    uris, _, _ = apt_output.partition("--- stanzas ---")
    with pytest.raises(LockError):
        parse_resolution(uris + "--- stanzas ---\n")


def test_nothing_to_fetch_is_empty() -> None:
    assert parse_resolution("--- stanzas ---\n") == []


def test_package_with_epoch_is_parsed() -> None:
    digest = sha("git")
    output = (
        "'http://deb.debian.org/debian/pool/main/g/git/git_2.39.5-0%2bdeb12u2_amd64.deb' "
        "git_1%3a2.39.5-0+deb12u2_amd64.deb 7264016 MD5Sum:0123456789abcdef0123456789abcdef\n"
        "--- stanzas ---\n"
        "Package: git\n"
        "Version: 1:2.39.5-0+deb12u2\n"
        "Architecture: amd64\n"
        "Filename: pool/main/g/git/git_2.39.5-0+deb12u2_amd64.deb\n"
        "Size: 7264016\n"
        f"SHA256: {digest}\n\n"
    )
    [package] = parse_resolution(output)
    assert package.name == "git"
    assert package.version == "1:2.39.5-0+deb12u2"
    assert package.sha256 == digest


# ---- wheel tags ----


@pytest.fixture
def ranking() -> dict[Tag, int]:
    return {tag: index for index, tag in enumerate(platform_tags(python="3.11", arch="x86_64", glibc="2.36"))}


def test_platform_tags_order(ranking: dict[Tag, int]) -> None:
    best = Tag("cp311", "cp311", "manylinux_2_36_x86_64")
    abi3 = Tag("cp311", "abi3", "manylinux_2_17_x86_64")
    pure = Tag("py3", "none", "any")
    assert ranking[best] == 0
    assert ranking[best] < ranking[abi3] < ranking[pure]
    assert (
        ranking[Tag("cp311", "cp311", "manylinux_2_36_x86_64")]
        < ranking[Tag("cp311", "cp311", "manylinux_2_17_x86_64")]
    )


def test_platform_tags_exclude_what_the_image_cannot_run(ranking: dict[Tag, int]) -> None:
    assert Tag("cp311", "cp311", "manylinux_2_37_x86_64") not in ranking
    assert Tag("cp311", "cp311", "manylinux_2_36_aarch64") not in ranking
    assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") not in ranking
    assert Tag("cp311", "cp311", "win_amd64") not in ranking
    assert Tag("cp311", "cp311", "macosx_11_0_arm64") not in ranking
    assert Tag("cp311", "cp311", "musllinux_1_1_x86_64") not in ranking
    assert Tag("cp311", "cp311", "manylinux2014_x86_64") in ranking
    assert Tag("cp311", "cp311", "manylinux_2_17_x86_64") in ranking


def test_platform_tags_for_aarch64() -> None:
    tags = platform_tags(python="3.12", arch="aarch64", glibc="2.31")
    assert tags[0] == Tag("cp312", "cp312", "manylinux_2_31_aarch64")
    assert Tag("cp312", "cp312", "manylinux_2_32_aarch64") not in tags
    assert Tag("cp312", "cp312", "manylinux_2_31_x86_64") not in tags


def _wheel(filename: str) -> dict[str, Any]:
    return {
        "url": f"https://files.pythonhosted.org/packages/00/11/{filename}",
        "hashes": {"sha256": sha(filename)},
        "size": len(filename),
    }


def test_best_wheel_prefers_the_manylinux_cp311_wheel(ranking: dict[Tag, int]) -> None:
    wheels = [
        _wheel("demo-1.0-py3-none-any.whl"),
        _wheel("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        _wheel("demo-1.0-cp311-cp311-win_amd64.whl"),
        _wheel("demo-1.0-cp311-cp311-macosx_11_0_arm64.whl"),
    ]
    chosen = _best_wheel("demo", wheels, ranking)
    assert chosen.filename == "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert chosen.url == wheels[1]["url"]
    assert chosen.sha256 == sha(chosen.filename)
    assert chosen.size == wheels[1]["size"]


def test_best_wheel_order_of_candidates_does_not_matter(ranking: dict[Tag, int]) -> None:
    wheels = [
        _wheel("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
        _wheel("demo-1.0-py3-none-any.whl"),
    ]
    assert _best_wheel("demo", wheels, ranking) == _best_wheel("demo", list(reversed(wheels)), ranking)
    assert _best_wheel("demo", wheels, ranking).filename == "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"


def test_best_wheel_falls_back_to_pure_python(ranking: dict[Tag, int]) -> None:
    wheels = [_wheel("demo-1.0-cp311-cp311-win_amd64.whl"), _wheel("demo-1.0-py3-none-any.whl")]
    assert _best_wheel("demo", wheels, ranking).filename == "demo-1.0-py3-none-any.whl"


@pytest.mark.parametrize(
    "filenames",
    [
        ["demo-1.0-cp311-cp311-win_amd64.whl"],
        ["demo-1.0-cp311-cp311-win_amd64.whl", "demo-1.0-cp311-cp311-macosx_11_0_arm64.whl"],
        ["demo-1.0-cp311-cp311-manylinux_2_39_x86_64.whl"],
        ["demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"],
        [],
    ],
)
def test_best_wheel_without_a_fitting_wheel_raises(ranking: dict[Tag, int], filenames: list[str]) -> None:
    with pytest.raises(LockError) as caught:
        _best_wheel("demo", [_wheel(name) for name in filenames], ranking)
    assert "demo" in caught.value.message


def test_a_package_built_from_its_sdist_round_trips_and_others_keep_their_bytes(tmp_path: Path) -> None:
    data = lock_data()
    before = dump_lock(Lock.model_validate(data))
    assert "sdist" not in before  # locks without one keep their exact bytes (and image hashes)
    built = python_package("antlr4_python3_runtime", "4.9.3")
    built["sdist"] = {
        "filename": "antlr4-python3-runtime-4.9.3.tar.gz",
        "url": "https://files.example/a.tar.gz",
        "sha256": sha("sdist"),
        "size": 117034,
    }
    built["wheel"]["url"] = built["sdist"]["url"]
    data["python"] = sorted([*data["python"], built], key=lambda p: p["name"])
    lock = Lock.model_validate(data)
    path = tmp_path / LOCK_FILENAME
    write_lock(lock, path)
    again = read_lock(path)
    assert again == lock
    package = next(p for p in again.python if p.sdist is not None)
    assert package.sdist is not None and package.sdist.sha256 == sha("sdist")
    assert package.wheel.sha256 != package.sdist.sha256


@pytest.mark.parametrize(
    ("filename", "refused"),
    [
        ("pickle_mixin-1.0.2-py3-none-any.whl", None),
        ("x-1.0-py2.py3-none-any.whl", None),
        ("x-1.0-cp311-cp311-linux_x86_64.whl", None),  # compiled here, on glibc no newer than the image's
        ("x-1.0-cp310-cp310-linux_x86_64.whl", "does not fit the image"),
        ("x-1.0-cp311-cp311-linux_aarch64.whl", "does not fit the image"),
    ],
)
def test_a_wheel_built_from_source_goes_into_the_image_only_if_it_fits(filename: str, refused: str | None) -> None:
    import platform

    from devenv.lock.sdists import _accepted

    ranking = {tag: i for i, tag in enumerate(platform_tags("3.11", "x86_64", platform.libc_ver()[1] or "2.36"))}
    why = _accepted(filename, "3.11", ranking, platform.libc_ver()[1] or "2.36")
    assert why is None if refused is None else refused in (why or "")


def test_a_wheel_compiled_on_a_newer_c_library_is_refused() -> None:
    from devenv.lock.sdists import _accepted

    ranking = {tag: i for i, tag in enumerate(platform_tags("3.11", "x86_64", "2.17"))}
    why = _accepted("x-1.0-cp311-cp311-linux_x86_64.whl", "3.11", ranking, "2.17")
    assert why is not None and "newer than the image's" in why


def test_the_source_epoch_is_the_lock_time() -> None:
    from devenv.lock.sdists import epoch

    assert epoch("2024-06-01T12:00:00Z") == 1717243200
