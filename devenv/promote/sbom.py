"""A CycloneDX 1.5 SBOM of a production image, made from its lock alone.

The lock already names every wheel, .deb and the base image with their hashes, so the SBOM needs
no scan of the image. It is reproducible: the time is the caller's (the commit's), components are
sorted, and the serial number is derived from the content, so the same lock and commit give the
same bytes. devenv's own dev tooling (JupyterLab, `lock.tooling`) is left out: the production image
does not carry it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

from devenv import __version__
from devenv.lock.models import AptPackage, BaseImage, Lock, PythonPackage

SPEC_VERSION = "1.5"
# A fixed namespace for the content-derived serial number (uuid5): same content, same serial.
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:devenv:sbom")
_HEX_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


def pep503_name(name: str) -> str:
    """The normalized project name (PEP 503), which is also what a pypi purl requires."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _purl_part(text: str) -> str:
    """Percent-encode a purl name or version; ':' stays literal, as the purl spec's examples (and
    packageurl-python) write Debian epochs."""
    return quote(text, safe=":")


def python_purl(package: PythonPackage) -> str:
    return f"pkg:pypi/{_purl_part(pep503_name(package.name))}@{_purl_part(package.version)}"


def apt_purl(package: AptPackage) -> str:
    return f"pkg:deb/debian/{_purl_part(package.name)}@{_purl_part(package.version)}?arch={quote(package.arch)}"


def _split_image(image: str) -> tuple[str, str | None]:
    """("devenv/base", "cpu-1fac") from "devenv/base:cpu-1fac"; a ':' before the last '/' is a port."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, None
    return repository, tag


def base_purl(base: BaseImage) -> str:
    repository, tag = _split_image(base.image)
    qualifiers = f"repository_url={quote(repository, safe='/:')}"
    if tag:
        qualifiers += f"&tag={quote(tag)}"
    name = repository.rsplit("/", 1)[-1].lower()
    return f"pkg:oci/{_purl_part(name)}@{_purl_part(base.digest)}?{qualifiers}"


def _sha256(content: str) -> list[dict[str, str]]:
    return [{"alg": "SHA-256", "content": content.lower()}]


def _python_component(package: PythonPackage) -> dict[str, Any]:
    purl = python_purl(package)
    # a wheel built from an sdist when locking was downloaded as that sdist: the reference names its hash
    source = package.sdist or package.wheel
    properties = [{"name": "devenv:wheel", "value": package.wheel.filename}]
    if package.sdist is not None:
        properties.append({"name": "devenv:built-from-sdist", "value": package.sdist.filename})
    return {
        "type": "library",
        "bom-ref": purl,
        "name": package.name,
        "version": package.version,
        "purl": purl,
        "hashes": _sha256(package.wheel.sha256),
        "externalReferences": [{"type": "distribution", "url": source.url, "hashes": _sha256(source.sha256)}],
        "properties": properties,
    }


def _apt_component(package: AptPackage) -> dict[str, Any]:
    purl = apt_purl(package)
    return {
        "type": "library",
        "bom-ref": purl,
        "name": package.name,
        "version": package.version,
        "purl": purl,
        "hashes": _sha256(package.sha256),
        "externalReferences": [{"type": "distribution", "url": package.url, "hashes": _sha256(package.sha256)}],
        "properties": [{"name": "devenv:deb", "value": package.filename}],
    }


def _base_component(base: BaseImage) -> dict[str, Any]:
    purl = base_purl(base)
    component: dict[str, Any] = {
        "type": "container",
        "bom-ref": purl,
        "name": base.image,
        "version": base.digest,
        "purl": purl,
        "properties": [
            {"name": "devenv:base:recipe", "value": base.recipe},
            {"name": "devenv:base:source", "value": base.source},
            {"name": "devenv:base:upstream", "value": base.upstream},
            {"name": "devenv:base:python", "value": base.python},
        ],
    }
    match = _HEX_DIGEST.match(base.digest.lower())
    if match:
        component["hashes"] = _sha256(match.group(1))
    return component


def _timestamp(created: dt.datetime) -> str:
    if created.tzinfo is None:
        raise ValueError("created must be timezone-aware (a commit time carries its offset)")
    return created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def cyclonedx(lock: Lock, *, name: str, version: str, created: dt.datetime) -> dict[str, Any]:
    """The SBOM of the production image built from `lock` for application `name` at commit `version`."""
    components = [_base_component(lock.base)]
    components += [_apt_component(package) for package in lock.apt]
    components += [_python_component(package) for package in lock.python]
    components.sort(key=lambda component: (component["type"], component["bom-ref"]))
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {
            "timestamp": _timestamp(created),
            "tools": {"components": [{"type": "application", "name": "devenv", "version": __version__}]},
            "component": {"type": "application", "bom-ref": f"application:{name}", "name": name, "version": version},
            "properties": [
                {"name": "devenv:lock:sha256", "value": lock.content_hash()},
                {"name": "devenv:lock:resolved_at", "value": lock.resolved_at},
                {"name": "devenv:lock:platform", "value": lock.inputs.platform},
            ],
        },
        "components": components,
    }
    doc["serialNumber"] = f"urn:uuid:{uuid.uuid5(_SERIAL_NAMESPACE, _canonical(doc).decode())}"
    return doc


def sbom_bytes(doc: dict[str, Any]) -> bytes:
    """The document as canonical JSON: sorted keys, 2-space indent, a trailing newline."""
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


__all__ = ["SPEC_VERSION", "apt_purl", "base_purl", "cyclonedx", "pep503_name", "python_purl", "sbom_bytes"]
