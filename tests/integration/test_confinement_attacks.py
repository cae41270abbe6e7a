"""Issue 17, findings 1 and 2, replayed against a real devenvd, the real CLI and the real engine.

A spec must not mount the engine's socket or /etc into a workspace (root on the Docker host), and must
not make the daemon read a file outside the project (its parse error once echoed the secrets key into a
response and into events every member reads). Each attack is refused before anything is created, and
no byte of the files it aimed at appears in a response, an event or the daemon's log. A folder the admin
lists in daemon.yaml still works (the positive control).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.backends.base import LABEL_WORKSPACE
from devenv.errors import DevenvError, SpecInvalid, UsageError
from harness.devenvd import Devenvd
from harness.versioning_world import GIT_TOKEN, VersioningWorld

pytestmark = pytest.mark.timeout(900)

MARKER = "MARKER-devenv-confinement-4b1d9e"
SPEC = "name: {name}\nrequirements: {requirements}\njupyter: false\n"
DATA = "repo: {{url: 'https://git.invalid/o/r.git'}}\ndata:\n  remote: '{remote}'\n"


def guarded_daemon(allowed: list[Path]) -> Devenvd:
    """A daemon whose admin allows `allowed` (daemon.yaml written before it starts)."""
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (daemon.home / "daemon.yaml").write_text(f"allowed_host_folders: [{', '.join(str(p) for p in allowed)}]\n")
    daemon.start()
    return daemon


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[Devenvd, Path]]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    daemon = guarded_daemon([allowed])
    yield daemon, allowed
    daemon.cleanup()


@pytest.fixture
def needles(guarded: tuple[Devenvd, Path], tmp_path: Path) -> tuple[Path, list[str]]:
    """A marked file outside any project, and what must never show: the marker and the daemon's secrets key."""
    daemon, _ = guarded
    outside = tmp_path / "outside" / "private.txt"
    outside.parent.mkdir()
    outside.write_text(f"{MARKER}\nroot:$6$salt$hash:19000:0:99999:7:::\n")
    daemon.cli("secret", "set", "API_SECRET", input="a-value\n", check=True)  # makes the secrets key
    key = (daemon.home / "secrets.key").read_text().strip()
    assert len(key) > 20
    return outside, [MARKER, key, key[:16], "$6$salt$hash"]


def project(
    folder: Path, name: str, *, requirements: str = "[]", extra: str = "", files: dict[str, str] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "devenv.yaml").write_text(SPEC.format(name=name, requirements=requirements) + extra)
    for relative, text in (files or {}).items():
        (folder / relative).write_text(text)
    return folder


def nothing_made(client: docker.DockerClient, daemon: Devenvd, name: str) -> None:
    label = {"label": f"{LABEL_WORKSPACE}={name}"}
    assert client.containers.list(all=True, filters=label) == []
    assert client.volumes.list(filters=label) == []
    assert name not in daemon.workspaces()


def everything_said(daemon: Devenvd, *outputs: str) -> str:
    events = daemon.cli("events", "--limit", "1000", check=True)
    log = (daemon.home / "devenvd.log").read_text(errors="replace")
    return "\n".join([*outputs, events.stdout, events.stderr, log])


@pytest.mark.parametrize(
    "remote",
    ["/var/run/docker.sock", "/run/docker.sock", "/var/run", "/tmp/../etc", "/etc", "{home}", "{home}/projects", "/"],
)
def test_the_engine_socket_and_host_folders_are_never_mounted(
    guarded: tuple[Devenvd, Path], tmp_path: Path, client: docker.DockerClient, remote: str
) -> None:
    daemon, _ = guarded
    remote = remote.format(home=daemon.home)
    folder = project(tmp_path / "p", "atk-mount", extra=DATA.format(remote=remote))
    up = daemon.cli("up", cwd=folder)
    said = up.stdout + up.stderr
    assert up.returncode == 2, said
    assert "data.remote" in said and "Traceback" not in said
    nothing_made(client, daemon, "atk-mount")


def test_an_unlisted_folder_names_the_fix(
    guarded: tuple[Devenvd, Path], tmp_path: Path, client: docker.DockerClient
) -> None:
    daemon, _ = guarded
    up = daemon.cli("up", cwd=project(tmp_path / "p", "atk-unlisted", extra=DATA.format(remote="/srv/dvc")))
    said = up.stdout + up.stderr
    assert up.returncode == 2 and "allowed_host_folders" in said and "daemon.yaml" in said, said
    nothing_made(client, daemon, "atk-unlisted")


def test_requirements_outside_the_project_are_refused_and_never_echoed(
    guarded: tuple[Devenvd, Path], needles: tuple[Path, list[str]], tmp_path: Path, client: docker.DockerClient
) -> None:
    daemon, _ = guarded
    outside, secrets = needles
    key_file = daemon.home / "secrets.key"
    climb = "../" * 12 + str(outside).lstrip("/")
    said: list[str] = []
    for index, requirement in enumerate([str(key_file), climb, "../../../../etc/shadow"]):
        folder = project(tmp_path / f"cli{index}", "atk-req", requirements=f"['{requirement}']")
        up = daemon.cli("up", cwd=folder)  # the CLI refuses before sending anything
        said += [up.stdout, up.stderr]
        assert up.returncode == 2 and "requirements[0]" in up.stdout + up.stderr, up.stdout + up.stderr

    # the same, and worse, sent straight to the daemon (a client that skips the CLI's checks)
    lines = [
        f"-r {key_file}\n",
        "-r ${DEVENV_HOME}/secrets.key\n",
        f"-c {outside}\n",
        f"pkg @ file://{outside}\n",
        f"--find-links {outside.parent}\n",
        f"-e {outside.parent}\n",
        f"numpy\n-r{climb}\n",
    ]
    with_file = SPEC.format(name="atk-raw", requirements="[requirements.in]")
    uploads = [
        {"devenv.yaml": SPEC.format(name="atk-raw", requirements=f"['{key_file}']")},
        {"devenv.yaml": SPEC.format(name="atk-raw", requirements=f"['{climb}']")},
        *({"devenv.yaml": with_file, "requirements.in": line} for line in lines),
        {"devenv.yaml": SPEC.format(name="atk-raw", requirements=f"['{climb}']"), climb: "numpy\n"},
    ]
    for files in uploads:
        with pytest.raises(DevenvError) as refused:
            list(daemon.client.up({"spec_path": "devenv.yaml", "files": files}))
        assert isinstance(refused.value, SpecInvalid | UsageError), refused.value
        said.append(refused.value.render())
    symlinked = project(tmp_path / "link", "atk-link", requirements="[r.in]")
    (symlinked / "r.in").symlink_to(outside)
    up = daemon.cli("up", cwd=symlinked)
    assert up.returncode == 2 and "outside the project" in up.stdout + up.stderr
    said += [up.stdout, up.stderr]

    everything = everything_said(daemon, *said)
    for needle in secrets:
        assert needle not in everything, f"{needle[:12]}... leaked"
    for name in ("atk-req", "atk-raw", "atk-link"):
        nothing_made(client, daemon, name)


def test_an_allowed_folder_is_mounted(world: VersioningWorld, client: docker.DockerClient, tmp_path: Path) -> None:
    """The positive control: the directory remote, under a folder daemon.yaml lists, is mounted and pulled."""
    daemon = guarded_daemon([world.root])
    try:
        for name, value in {"GIT_TOKEN": GIT_TOKEN, "API_SECRET": "x", "WANDB_API_KEY": "0" * 40}.items():
            daemon.cli("secret", "set", name, input=value + "\n", check=True)
        folder = world.project(world.dir_project, tmp_path / "p", "atk-allowed")
        up = daemon.cli("up", cwd=folder, check=True)
        assert "pulled DVC data" in up.stderr, up.stderr
        mounts = client.containers.get("devenv-atk-allowed").attrs["Mounts"]
        binds = {(m["Source"], m["Destination"]) for m in mounts if m["Type"] == "bind"}
        assert (str(world.remote_dir.resolve()), str(world.remote_dir)) in binds, binds
    finally:
        daemon.cleanup()
