"""Making a base image from Debian packages when no registry answers: debootstrap, then an image whose ID
depends only on the package versions it holds.

debootstrap leaves a root whose files are the same for the same package versions except for what records
when it ran: the times of files written while installing, host keys, logs, ldconfig's cache and
/etc/shadow's last-change days. The first are clamped to the newest time found in the packages themselves
(`source_epoch`), the others removed or clamped; the root goes into one tar (sorted, numeric owners) and
the image is loaded with a config that holds that same time and the package versions as a label
(`devenv.build.reproducible.load_root_image`). Two bootstraps of the same versions give the same ID, on
any machine; `find_base` gives the lock the versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from devenv.build.reproducible import load_root_image, rfc3339
from devenv.engine.sdk import DockerClient
from devenv.errors import DevenvError, ToolMissing
from devenv.progress import Progress, emit

if TYPE_CHECKING:
    from devenv.build.base import Recipe

SOURCE_LABEL = "devenv.base.source"
RECIPE_LABEL = "devenv.base.recipe"
PACKAGES_LABEL = "devenv.base.packages"  # "name=version ..." of a bootstrapped base, sorted


def bootstrap_base(client: DockerClient, recipe: Recipe, progress: Progress | None = None) -> str:
    """debootstrap the recipe's suite into a temporary root, tidy it, and load it as the base; its image ID."""
    if os.geteuid() != 0:
        raise ToolMissing("debootstrap must run as root", hint="run `sudo devenv images bootstrap`")
    debootstrap = ensure_debootstrap(progress)
    with tempfile.TemporaryDirectory(prefix="devenv-bootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        mirror = recipe.mirror or "http://deb.debian.org/debian"
        command = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(recipe.packages)}",
            recipe.suite,
            str(root),
            mirror,
        ]
        emit(progress, "phase", "debootstrap " + " ".join(command[1:]))
        started = int(time.time())
        # a fixed hash seed: the .pyc files the packages' scripts compile come out the same
        _run_streaming(command, progress, env={**os.environ, "PYTHONHASHSEED": "0"})
        _tidy_root(root, recipe)
        epoch = source_epoch(root, started)
        clamp_shadow(root, epoch)
        packages = installed_packages(root)
        emit(
            progress,
            "phase",
            f"archiving the root file system ({len(packages)} packages, times clamped to {rfc3339(epoch)})",
        )
        layer = Path(tmp) / "layer.tar"
        _tar_root(root, layer, epoch)
        emit(progress, "phase", f"loading it as {recipe.image_tag}")
        labels = {
            SOURCE_LABEL: "bootstrap",
            RECIPE_LABEL: recipe.content_hash,
            PACKAGES_LABEL: " ".join(f"{name}={version}" for name, version in sorted(packages.items())),
        }
        return load_root_image(
            client,
            layer,
            tag=recipe.image_tag,
            epoch=epoch,
            config={"Env": ["LANG=C.UTF-8"], "Cmd": ["/bin/bash"], "Labels": labels},
            created_by=f"debootstrap --variant=minbase {recipe.suite} ({mirror})",
        )


def source_epoch(root: Path, started: int) -> int:
    """The newest time a file had in the packages (before debootstrap `started`): every later time in the root
    was written while installing, and is clamped to this one. Debian's packages are built reproducibly, their
    files dated by their changelog, so the same versions give the same time."""
    newest = 0
    for folder, folders, files in os.walk(root):
        for name in (*folders, *files):
            mtime = int(os.lstat(os.path.join(folder, name)).st_mtime)
            if newest < mtime < started:
                newest = mtime
    if newest == 0:
        raise DevenvError(
            f"no file in the bootstrapped root at {root} predates the bootstrap", hint="check this machine's clock"
        )
    return newest


def clamp_shadow(root: Path, epoch: int) -> None:
    """/etc/shadow's last-change day (field 3) clamped to `epoch`'s, as shadow's tools do with SOURCE_DATE_EPOCH."""
    day = epoch // 86400
    for name in ("etc/shadow", "etc/shadow-"):
        path = root / name
        if not path.exists():
            continue
        lines = []
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) > day:
                fields[2] = str(day)
            lines.append(":".join(fields))
        path.write_text("\n".join(lines) + "\n")


def installed_packages(root: Path) -> dict[str, str]:
    """Package -> version of what dpkg installed in `root` (read from its status file)."""
    packages: dict[str, str] = {}
    for stanza in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages[fields["Package"]] = fields.get("Version", "")
    return packages


def ensure_debootstrap(progress: Progress | None = None) -> str:
    """debootstrap's path; on a Debian/Ubuntu machine without it, installed first with apt-get (as root, said
    as it happens), so a fresh machine with only Python and a Docker engine gets its first workspace in one
    command. `DEVENV_INSTALL_TOOLS=0` turns that off (a ToolMissing naming the package instead)."""
    found = shutil.which("debootstrap")
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    missing = ToolMissing(
        "debootstrap is needed to make the base image without a registry",
        hint="apt-get install debootstrap (Debian/Ubuntu), then run this again",
    )
    if apt_get is None or os.geteuid() != 0 or os.environ.get("DEVENV_INSTALL_TOOLS", "1") == "0":
        raise missing
    emit(
        progress,
        "phase",
        "debootstrap is not installed: installing Debian's debootstrap package with apt-get "
        "(it makes the base image from Debian packages when no registry answers)",
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt_get, "update", "-qq"],
        [apt_get, "install", "-y", "-qq", "--no-install-recommends", "debootstrap"],
    ):
        _run_streaming(command, progress, env=env, what=" ".join(["apt-get", *command[1:]]))
    found = shutil.which("debootstrap")
    if found is None:
        raise missing
    return found


def _run_streaming(
    command: list[str], progress: Progress | None, *, env: dict[str, str] | None = None, what: str = "debootstrap"
) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        tail = [*tail[-30:], line.rstrip()]
        emit(progress, "log", line.rstrip())
    if process.wait() != 0:
        raise DevenvError(
            f"{what} failed:\n" + "\n".join(tail), hint="check that this machine reaches the Debian mirror"
        )


def _tidy_root(root: Path, recipe: Recipe) -> None:
    """What the registry recipe does after apt: the `dev` user, no baked host keys, no caches."""
    subprocess.run(
        ["chroot", str(root), "useradd", "--create-home", "--uid", "1000", "--shell", "/bin/bash", "dev"], check=True
    )
    mirror = recipe.mirror or "http://deb.debian.org/debian"
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {recipe.suite} main\n"
        f"deb {mirror} {recipe.suite}-updates main\n"
        f"deb {security} {recipe.suite}-security main\n"
    )
    for pattern in (
        "etc/ssh/ssh_host_*",
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/log/*.log",
        "var/log/apt/*",
        "var/cache/ldconfig/aux-cache",
    ):
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    (root / "etc/hostname").write_text("")


def _tar_root(root: Path, out: Path, epoch: int) -> None:
    """The root as one tar: entries sorted, owners by number, no time later than `epoch`."""
    result = subprocess.run(
        [
            "tar",
            "--numeric-owner",
            "--sort=name",
            f"--mtime=@{epoch}",
            "--clamp-mtime",
            "--format=gnu",
            "-C",
            str(root),
            "-cf",
            str(out),
            ".",
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise DevenvError(f"archiving the bootstrapped root failed: {result.stderr.decode()[-500:]}")
