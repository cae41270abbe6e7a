"""What an image build is, computed without touching the network or the engine.

The plan holds the rendered Dockerfile, the generated requirement files and the image hash: a
content hash of exactly what determines the image (Dockerfile, lock, context files). A build whose
hash is already a tag on the engine is a cache hit, so an unchanged project builds nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import jinja2

from devenv.build.tooling import dockerfile_template, tooling_files
from devenv.lock.models import Lock, PythonPackage

IMAGE_HASH_LABEL = "devenv.image-hash"
LOCK_HASH_LABEL = "devenv.lock-hash"
BASE_DIGEST_LABEL = "devenv.base-digest"


@dataclass(frozen=True)
class BuildPlan:
    name: str
    dockerfile: str
    python_requirements: str
    tooling_requirements: str
    lock: Lock
    image_hash: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"devenv/{self.name}:{self.image_hash[:16]}"


def requirements_text(packages: list[PythonPackage]) -> str:
    """A pip requirements file that admits exactly the locked wheel of each package."""
    return "".join(f"{p.name}=={p.version} --hash=sha256:{p.wheel.sha256}\n" for p in packages)


def setup_instruction(step: str) -> str:
    """A setup step as a RUN argument: shell form for one line, JSON exec form for a script.

    A Dockerfile line cannot hold a newline, so a multi-line script travels as one JSON string
    for `bash -c`, which keeps its lines (loops, heredocs, `if` blocks) intact.
    """
    script = step.strip()
    if "\n" not in script:
        return script
    return json.dumps(["/bin/bash", "-euo", "pipefail", "-c", script])


def render_dockerfile(lock: Lock, *, setup: list[str], jupyter: bool) -> str:
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    template = environment.from_string(dockerfile_template().read_text())
    return template.render(
        base_image=lock.base.image,
        apt=bool(lock.apt),
        python=bool(lock.python),
        setup=[setup_instruction(step) for step in setup],
        jupyter=jupyter and bool(lock.tooling),
    )


def image_hash(dockerfile: str, lock: Lock, context_files: dict[str, bytes]) -> str:
    digest = hashlib.sha256(b"devenv-image-v1\0")
    digest.update(dockerfile.encode() + b"\0")
    digest.update(lock.canonical_bytes() + b"\0")
    for name in sorted(context_files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(context_files[name]).digest())
    return digest.hexdigest()


def plan_build(
    name: str, lock: Lock, *, setup: list[str], jupyter: bool, source: str | None = None, revision: str | None = None
) -> BuildPlan:
    """The plan. The image hash covers the Dockerfile, the lock and the context files. The labels (that hash,
    the name, the git revision) are no build step: they are set in the normalised image's config, so projects
    that differ only in them get the very same layers from the builder (and from its cache)."""
    body = render_dockerfile(lock, setup=setup, jupyter=jupyter)
    python_requirements = requirements_text(lock.python)
    tooling_requirements = requirements_text(lock.tooling) if jupyter else ""
    files = {f"tooling/{n}": p.read_bytes() for n, p in tooling_files().items()}
    files["python/requirements.txt"] = python_requirements.encode()
    files["tooling/requirements.txt"] = tooling_requirements.encode()
    digest = image_hash(body, lock, files)
    labels = {
        IMAGE_HASH_LABEL: digest,
        LOCK_HASH_LABEL: lock.content_hash(),
        BASE_DIGEST_LABEL: lock.base.digest,
        "devenv.spec-name": name,
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.base.name": lock.base.image,
        "org.opencontainers.image.base.digest": lock.base.digest,
    }
    if source:
        labels["org.opencontainers.image.source"] = source
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    return BuildPlan(
        name=name,
        dockerfile=body,
        python_requirements=python_requirements,
        tooling_requirements=tooling_requirements,
        lock=lock,
        image_hash=digest,
        labels=labels,
    )
