"""Base images: load a recipe from images/, and make sure its image exists on the engine.

Two paths to the same base, chosen automatically: pull the recipe's upstream image pinned by
digest and build the recipe's Dockerfile on it; or, when no registry answers, debootstrap the
same suite and packages on this host and load the result (devenv.build.bootstrap: the same
package versions give the same image ID). Either way the base is tagged by the recipe's content
hash and labelled with how it was made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from devenv.build.bootstrap import PACKAGES_LABEL, RECIPE_LABEL, SOURCE_LABEL, bootstrap_base
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import APIError, DockerClient, ImageNotFound, RequestException
from devenv.errors import BaseImageMissing, DevenvError
from devenv.lock.models import BaseImage
from devenv.progress import Progress, emit
from devenv.resources import images_dir


@dataclass(frozen=True)
class Recipe:
    name: str
    python: str
    suite: str
    upstream: str
    bootstrap: bool
    mirror: str | None
    glibc: str
    directory: Path

    @property
    def packages(self) -> list[str]:
        lines = (self.directory / "packages.txt").read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.directory.iterdir()):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    @property
    def image_tag(self) -> str:
        return f"devenv/base:{self.name}-{self.content_hash[:12]}"

    @property
    def upstream_digest(self) -> str:
        return self.upstream.rsplit("@", 1)[-1]


def available_recipes() -> list[str]:
    return sorted(path.parent.name for path in images_dir().glob("*/recipe.yaml"))


def load_recipe(name: str) -> Recipe:
    directory = images_dir() / name
    recipe_file = directory / "recipe.yaml"
    if not recipe_file.is_file():
        raise BaseImageMissing(
            f"no base recipe named {name!r}", hint=f"choose one of: {', '.join(available_recipes())}"
        )
    data = yaml.safe_load(recipe_file.read_text())
    return Recipe(
        name=data["name"],
        python=str(data["python"]),
        suite=data["suite"],
        upstream=data["upstream"],
        bootstrap=bool(data.get("bootstrap")),
        mirror=data.get("mirror"),
        glibc=str(data["glibc"]),
        directory=directory,
    )


def find_base(client: DockerClient, recipe: Recipe) -> BaseImage | None:
    """The recipe's base on this engine, if it was made already."""
    try:
        image = client.images.get(recipe.image_tag)
    except ImageNotFound:
        return None
    labels = image.labels or {}
    source = labels.get(SOURCE_LABEL, "registry")
    listed = labels.get(PACKAGES_LABEL)
    packages = dict(item.partition("=")[::2] for item in listed.split()) if listed else None
    return BaseImage(
        recipe=recipe.name,
        image=recipe.image_tag,
        digest=image.attrs["Id"],
        source="bootstrap" if source == "bootstrap" else "registry",
        upstream=recipe.upstream,
        python=recipe.python,
        packages=packages,
    )


def ensure_base(
    client: DockerClient, recipe: Recipe, progress: Progress | None = None, *, force: bool = False
) -> BaseImage:
    """Return the recipe's base on this engine, making it first if needed (registry, else bootstrap)."""
    existing = None if force else find_base(client, recipe)
    if existing is not None:
        return existing
    emit(progress, "phase", f"base image {recipe.image_tag} not found; making it")
    pull_error = _try_pull(client, recipe, progress)
    if pull_error is None:
        _build_on_upstream(client, recipe, progress)
    elif recipe.bootstrap:
        emit(
            progress,
            "phase",
            f"no registry answered ({pull_error}); bootstrapping the base from Debian packages with debootstrap",
        )
        bootstrap_base(client, recipe, progress)
    else:
        raise BaseImageMissing(
            f"the {recipe.name} base needs {recipe.upstream} from a registry, and none answered: {pull_error}",
            hint="load that image with `docker load`, or use a base that can be bootstrapped (cpu)",
        )
    made = find_base(client, recipe)
    if made is None:
        raise BaseImageMissing(f"making {recipe.image_tag} finished without an image")
    emit(progress, "done", f"base image {made.image} ({made.source}) {made.digest}")
    return made


def _try_pull(client: DockerClient, recipe: Recipe, progress: Progress | None) -> str | None:
    """Pull the pinned upstream; return None on success, else why it failed."""
    emit(progress, "phase", f"pulling {recipe.upstream}")
    try:
        client.api.pull(recipe.upstream)
    except (APIError, RequestException) as exc:
        explanation = getattr(exc, "explanation", None) or str(exc)
        return explanation.splitlines()[0][:200]
    return None


def _build_on_upstream(client: DockerClient, recipe: Recipe, progress: Progress | None) -> None:
    emit(progress, "phase", f"building the {recipe.name} base on {recipe.upstream}")
    with engine_errors(f"building base {recipe.image_tag}"):
        for chunk in client.api.build(
            path=str(recipe.directory),
            tag=recipe.image_tag,
            buildargs={"UPSTREAM": recipe.upstream},
            labels={SOURCE_LABEL: "registry", RECIPE_LABEL: recipe.content_hash},
            rm=True,
            decode=True,
        ):
            if "stream" in chunk and chunk["stream"].strip():
                emit(progress, "log", chunk["stream"].rstrip())
            if "error" in chunk:
                raise DevenvError(f"building the {recipe.name} base failed: {chunk['error'].strip()}")
