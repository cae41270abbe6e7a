"""The CycloneDX SBOM made from a lock: valid 1.5, reproducible, with purls and hashes, without dev tooling."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from devenv import __version__
from devenv.build.project import open_project
from devenv.lock.apt import parse_resolution
from devenv.lock.lockfile import read_lock, write_lock
from devenv.lock.models import Lock, PythonPackage, Wheel
from devenv.promote.sbom import cyclonedx, pep503_name, sbom_bytes
from devenv.testing.fake_images import write_fake_lock
from devenv.testing.projects import copy_template

DATA = Path(__file__).parent / "data"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CREATED = dt.datetime(2024, 5, 6, 9, 10, 11, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def wheel_package(name: str, version: str, filename: str) -> PythonPackage:
    sha = hashlib.sha256(filename.encode()).hexdigest()
    return PythonPackage(
        name=name,
        version=version,
        wheel=Wheel(
            filename=filename, url=f"https://files.pythonhosted.org/packages/xx/{filename}", sha256=sha, size=1234
        ),
    )


PYTHON = [
    wheel_package("numpy", "2.1.3", "numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
    wheel_package("typing_extensions", "4.12.2", "typing_extensions-4.12.2-py3-none-any.whl"),
    wheel_package("zope.interface", "7.1.1", "zope.interface-7.1.1-cp311-cp311-manylinux_2_17_x86_64.whl"),
    wheel_package("torch", "2.4.1+cpu", "torch-2.4.1+cpu-cp311-cp311-linux_x86_64.whl"),
]
TOOLING = [
    wheel_package("jupyterlab", "4.2.5", "jupyterlab-4.2.5-py3-none-any.whl"),
    wheel_package("jupyter_server", "2.14.2", "jupyter_server-2.14.2-py3-none-any.whl"),
]


@pytest.fixture
def lock(tmp_path: Path) -> Lock:
    """A lock file as `devenv lock` writes it: real apt pins (from apt's own answer), handcrafted wheels."""
    project = open_project(copy_template("minimal", tmp_path / "p", project_name="shop"))
    write_fake_lock(project)
    apt = parse_resolution((DATA / "apt_resolution_curl.txt").read_text())
    made = read_lock(project.lock_path).model_copy(update={"apt": apt, "python": PYTHON, "tooling": TOOLING})
    write_lock(made, project.lock_path)
    return read_lock(project.lock_path)


def make(lock: Lock, **changes: Any) -> dict[str, Any]:
    return cyclonedx(lock, **{"name": "shop", "version": COMMIT, "created": CREATED, **changes})


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {component["name"]: component for component in doc["components"]}


def test_the_document_is_valid_cyclonedx_1_5(lock: Lock) -> None:
    text = sbom_bytes(make(lock)).decode()
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert error is None, error


def test_same_lock_and_time_give_the_same_bytes(lock: Lock, tmp_path: Path) -> None:
    first = sbom_bytes(make(lock))
    write_lock(lock, tmp_path / "again.lock")
    again = sbom_bytes(make(read_lock(tmp_path / "again.lock")))
    assert first == again
    assert first.endswith(b"}\n")
    loaded = json.loads(first)
    assert first.decode() == json.dumps(loaded, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_components_are_sorted_whatever_the_lock_order(lock: Lock) -> None:
    shuffled = lock.model_copy(update={"python": list(reversed(lock.python)), "apt": list(reversed(lock.apt))})
    assert make(shuffled)["components"] == make(lock)["components"]
    refs = [(component["type"], component["bom-ref"]) for component in make(lock)["components"]]
    assert refs == sorted(refs)


def test_metadata_names_the_time_the_tool_and_the_application(lock: Lock) -> None:
    metadata = make(lock)["metadata"]
    assert metadata["timestamp"] == "2024-05-06T07:10:11Z"  # the commit time, in UTC
    assert metadata["tools"]["components"] == [{"type": "application", "name": "devenv", "version": __version__}]
    assert metadata["component"]["type"] == "application"
    assert (metadata["component"]["name"], metadata["component"]["version"]) == ("shop", COMMIT)
    assert {"name": "devenv:lock:sha256", "value": lock.content_hash()} in metadata["properties"]


def test_python_packages_have_pypi_purls_wheel_hashes_and_filenames(lock: Lock) -> None:
    components = by_name(make(lock))
    for package in PYTHON:
        component = components[package.name]
        assert component["type"] == "library"
        assert component["version"] == package.version
        assert component["hashes"] == [{"alg": "SHA-256", "content": package.wheel.sha256}]
        assert {"name": "devenv:wheel", "value": package.wheel.filename} in component["properties"]
        parsed = PackageURL.from_string(component["purl"])
        assert (parsed.type, parsed.name, parsed.version) == ("pypi", pep503_name(package.name), package.version)
    assert components["typing_extensions"]["purl"] == "pkg:pypi/typing-extensions@4.12.2"
    assert components["zope.interface"]["purl"] == "pkg:pypi/zope-interface@7.1.1"
    assert components["torch"]["purl"] == "pkg:pypi/torch@2.4.1%2Bcpu"


def test_apt_packages_have_deb_purls_and_their_sha256(lock: Lock) -> None:
    assert lock.apt, "the sample resolution names packages"
    components = by_name(make(lock))
    for package in lock.apt:
        component = components[package.name]
        assert component["hashes"] == [{"alg": "SHA-256", "content": package.sha256}]
        assert component["purl"].startswith(f"pkg:deb/debian/{package.name}@")
        assert component["purl"].endswith(f"?arch={package.arch}")
        parsed = PackageURL.from_string(component["purl"])
        assert (parsed.namespace, parsed.name, parsed.version) == ("debian", package.name, package.version)
        assert parsed.qualifiers == {"arch": package.arch}
        assert {"name": "devenv:deb", "value": package.filename} in component["properties"]
    curl = components["curl"]
    assert re.fullmatch(r"pkg:deb/debian/curl@7\.88\.1-10%2Bdeb12u\d+\?arch=amd64", curl["purl"]), curl["purl"]


def test_the_base_image_is_a_container_with_its_digest(lock: Lock) -> None:
    containers = [c for c in make(lock)["components"] if c["type"] == "container"]
    assert len(containers) == 1
    base = containers[0]
    assert (base["name"], base["version"]) == (lock.base.image, lock.base.digest)
    assert base["hashes"] == [{"alg": "SHA-256", "content": lock.base.digest.removeprefix("sha256:")}]
    parsed = PackageURL.from_string(base["purl"])
    assert (parsed.type, parsed.version) == ("oci", lock.base.digest)


def test_dev_tooling_is_not_in_it(lock: Lock) -> None:
    text = sbom_bytes(make(lock)).decode()
    names = set(by_name(make(lock)))
    for package in lock.tooling:
        assert package.name not in names
        assert package.wheel.sha256 not in text
    assert "jupyter" not in text
    assert len(make(lock)["components"]) == 1 + len(lock.apt) + len(lock.python)


def test_the_serial_number_follows_the_content(lock: Lock) -> None:
    serial = make(lock)["serialNumber"]
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", serial)
    assert make(lock)["serialNumber"] == serial
    bumped = [wheel_package("numpy", "2.1.4", "numpy-2.1.4-cp311-cp311-manylinux_2_17_x86_64.whl"), *PYTHON[1:]]
    assert make(lock.model_copy(update={"python": bumped}))["serialNumber"] != serial
    assert make(lock, version="f" * 40)["serialNumber"] != serial
    assert make(lock, created=CREATED + dt.timedelta(seconds=1))["serialNumber"] != serial


def test_a_time_without_a_zone_is_refused(lock: Lock) -> None:
    with pytest.raises(ValueError, match="timezone"):
        make(lock, created=dt.datetime(2024, 5, 6, 9, 10, 11))
