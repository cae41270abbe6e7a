"""Base images: load a recipe from images/, and make sure its image exists on the engine.

Two paths to the same base, chosen automatically: pull the recipe's upstream image pinned by
digest and build the recipe's Dockerfile on it; or, when no registry answers, debootstrap the
same suite and packages on this host and `docker import` the result. Either way the base is
tagged by the recipe's content hash and labelled with how it was made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
import yaml

from devenv.build.engine import engine_errors
from devenv.errors import BaseImageMissing, DevenvError, ToolMissing
from devenv.lock.models import BaseImage
from devenv.progress import Progress, emit
from devenv.resources import images_dir

SOURCE_LABEL = "devenv.base.source"
RECIPE_LABEL = "devenv.base.recipe"


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
        raise BaseImageMissing(f"no base recipe named {name!r}",
                               hint=f"choose one of: {', '.join(available_recipes())}")
    data = yaml.safe_load(recipe_file.read_text())
    return Recipe(
        name=data["name"], python=str(data["python"]), suite=data["suite"], upstream=data["upstream"],
        bootstrap=bool(data.get("bootstrap")), mirror=data.get("mirror"), glibc=str(data["glibc"]),
        directory=directory,
    )


def find_base(client: docker.DockerClient, recipe: Recipe) -> BaseImage | None:
    """The recipe's base on this engine, if it was made already."""
    try:
        image = client.images.get(recipe.image_tag)
    except docker.errors.ImageNotFound:
        return None
    labels = image.labels or {}
    source = labels.get(SOURCE_LABEL, "registry")
    return BaseImage(recipe=recipe.name, image=recipe.image_tag, digest=image.attrs["Id"],
                     source="bootstrap" if source == "bootstrap" else "registry",
                     upstream=recipe.upstream, python=recipe.python)


def ensure_base(client: docker.DockerClient, recipe: Recipe, progress: Progress | None = None,
                *, force: bool = False) -> BaseImage:
    """Return the recipe's base on this engine, making it first if needed (registry, else bootstrap)."""
    existing = None if force else find_base(client, recipe)
    if existing is not None:
        return existing
    emit(progress, "phase", f"base image {recipe.image_tag} not found; making it")
    pull_error = _try_pull(client, recipe, progress)
    if pull_error is None:
        _build_on_upstream(client, recipe, progress)
    elif recipe.bootstrap:
        emit(progress, "phase", f"no registry answered ({pull_error}); bootstrapping the base from "
                                f"Debian packages with debootstrap")
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


def _try_pull(client: docker.DockerClient, recipe: Recipe, progress: Progress | None) -> str | None:
    """Pull the pinned upstream; return None on success, else why it failed."""
    emit(progress, "phase", f"pulling {recipe.upstream}")
    try:
        client.api.pull(recipe.upstream)
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        explanation = getattr(exc, "explanation", None) or str(exc)
        return explanation.splitlines()[0][:200]
    return None


def _build_on_upstream(client: docker.DockerClient, recipe: Recipe, progress: Progress | None) -> None:
    emit(progress, "phase", f"building the {recipe.name} base on {recipe.upstream}")
    with engine_errors(f"building base {recipe.image_tag}"):
        for chunk in client.api.build(
            path=str(recipe.directory), tag=recipe.image_tag, buildargs={"UPSTREAM": recipe.upstream},
            labels={SOURCE_LABEL: "registry", RECIPE_LABEL: recipe.content_hash}, rm=True, decode=True,
        ):
            if "stream" in chunk and chunk["stream"].strip():
                emit(progress, "log", chunk["stream"].rstrip())
            if "error" in chunk:
                raise DevenvError(f"building the {recipe.name} base failed: {chunk['error'].strip()}")


def bootstrap_base(client: docker.DockerClient, recipe: Recipe, progress: Progress | None = None) -> None:
    """debootstrap the recipe's suite into a temporary root, tidy it, and import it as the base."""
    if os.geteuid() != 0:
        raise ToolMissing("debootstrap must run as root", hint="run `sudo devenv images bootstrap`")
    debootstrap = ensure_debootstrap(progress)
    with tempfile.TemporaryDirectory(prefix="devenv-bootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        command = [debootstrap, "--variant=minbase", f"--include={','.join(recipe.packages)}",
                   recipe.suite, str(root), recipe.mirror or "http://deb.debian.org/debian"]
        emit(progress, "phase", "debootstrap " + " ".join(command[1:]))
        _run_streaming(command, progress)
        _tidy_root(root, recipe)
        emit(progress, "phase", f"importing the root file system as {recipe.image_tag}")
        stream = _tar_root(root)
        repository, tag = recipe.image_tag.rsplit(":", 1)
        with engine_errors(f"importing {recipe.image_tag}"):
            client.api.import_image_from_data(
                stream, repository=repository, tag=tag,
                changes=[f"LABEL {SOURCE_LABEL}=bootstrap {RECIPE_LABEL}={recipe.content_hash}",
                         'CMD ["/bin/bash"]', "ENV LANG=C.UTF-8"],
            )


def ensure_debootstrap(progress: Progress | None = None) -> str:
    """debootstrap's path; on a Debian/Ubuntu machine without it, installed first with apt-get (as root, said
    as it happens), so a fresh machine with only Python and a Docker engine gets its first workspace in one
    command. `DEVENV_INSTALL_TOOLS=0` turns that off (a ToolMissing naming the package instead)."""
    found = shutil.which("debootstrap")
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    missing = ToolMissing("debootstrap is needed to make the base image without a registry",
                          hint="apt-get install debootstrap (Debian/Ubuntu), then run this again")
    if apt_get is None or os.geteuid() != 0 or os.environ.get("DEVENV_INSTALL_TOOLS", "1") == "0":
        raise missing
    emit(progress, "phase", "debootstrap is not installed: installing Debian's debootstrap package with apt-get "
                            "(it makes the base image from Debian packages when no registry answers)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt_get, "update", "-qq"],
                    [apt_get, "install", "-y", "-qq", "--no-install-recommends", "debootstrap"]):
        _run_streaming(command, progress, env=env, what=" ".join(["apt-get", *command[1:]]))
    found = shutil.which("debootstrap")
    if found is None:
        raise missing
    return found


def _run_streaming(command: list[str], progress: Progress | None, *, env: dict[str, str] | None = None,
                   what: str = "debootstrap") -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        tail = [*tail[-30:], line.rstrip()]
        emit(progress, "log", line.rstrip())
    if process.wait() != 0:
        raise DevenvError(f"{what} failed:\n" + "\n".join(tail),
                          hint="check that this machine reaches the Debian mirror")


def _tidy_root(root: Path, recipe: Recipe) -> None:
    """What the registry recipe does after apt: the `dev` user, no baked host keys, no caches."""
    subprocess.run(["chroot", str(root), "useradd", "--create-home", "--uid", "1000", "--shell",
                    "/bin/bash", "dev"], check=True)
    mirror = recipe.mirror or "http://deb.debian.org/debian"
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {recipe.suite} main\n"
        f"deb {mirror} {recipe.suite}-updates main\n"
        f"deb {security} {recipe.suite}-security main\n"
    )
    for pattern in ("etc/ssh/ssh_host_*", "var/lib/apt/lists/*", "var/cache/apt/*.bin",
                    "var/cache/apt/archives/*.deb", "var/log/*.log", "var/log/apt/*"):
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    (root / "etc/hostname").write_text("")


def _tar_root(root: Path) -> bytes:
    """The root as a tar stream, owners by number, entries in a stable order."""
    result = subprocess.run(["tar", "--numeric-owner", "--sort=name", "-C", str(root), "-cf", "-", "."],
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise DevenvError(f"archiving the bootstrapped root failed: {result.stderr.decode()[-500:]}")
    return result.stdout
