"""The whole workspace lifecycle through the real CLI, a real devenvd and the real Docker engine."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import docker
import pytest

from devenv.backends.base import LABEL_WORKSPACE, container_name, volume_name
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd


def project(source: WorkspaceImage, folder: Path, *, name: str, extra: str = "") -> Path:
    return copy_project(source, folder, name, extra=extra)


def test_socket_is_private(devenvd: Devenvd) -> None:
    mode = (devenvd.home / "devenvd.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((devenvd.home / "devenv.db").stat().st_mode) & 0o077 == 0


def test_whole_lifecycle_keeps_the_home(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    folder = project(light_image, tmp_path / "p", name="it-life")
    first = devenvd.cli("up", cwd=folder, check=True)
    assert "it-life: running" in first.stdout
    again = devenvd.cli("up", cwd=folder, check=True)  # idempotent: still one workspace
    assert "it-life: running" in again.stdout
    assert [c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}=it-life"})] == [
        container_name("it-life")
    ]

    listing = devenvd.cli("ls", check=True).stdout
    assert "it-life" in listing and "running" in listing and "AUTOSTOP" in listing

    wrote = devenvd.cli(
        "exec", "it-life", "--", "sh", "-c", "echo precious > ~/data.txt && sha256sum ~/data.txt", check=True
    )
    checksum = wrote.stdout.split()[0]
    container = client.containers.get(container_name("it-life"))
    labels = container.labels
    assert labels[LABEL_WORKSPACE] == "it-life" and labels["devenv.image-hash"] == light_image.image_hash
    assert labels["devenv.owner"]
    host_config = container.attrs["HostConfig"]
    assert host_config["NanoCpus"] == 2 * 10**9 and host_config["Memory"] == 4 * 1024**3
    assert container.attrs["Config"]["Entrypoint"][0] == "/usr/bin/tini"

    assert "it-life: stopped" in devenvd.cli("stop", "it-life", check=True).stdout
    assert client.containers.get(container_name("it-life")).status == "exited"
    assert "it-life: running" in devenvd.cli("start", "it-life", check=True).stdout

    (folder / "devenv.yaml").write_text((folder / "devenv.yaml").read_text() + "env:\n  STAGE: rebuilt\n")
    devenvd.cli("rebuild", "it-life", cwd=folder, check=True)
    after = devenvd.cli("exec", "it-life", "--", "sh", "-c", "echo $STAGE; sha256sum ~/data.txt", check=True)
    assert after.stdout.split()[:2] == ["rebuilt", checksum]
    assert client.containers.get(container_name("it-life")).id != container.id

    deadline = time.monotonic() + 30  # sshd logs once its host keys are made
    while "Server listening" not in (logs := devenvd.cli("logs", "it-life", check=True).stdout):
        assert time.monotonic() < deadline, f"no sshd line in the workspace's logs: {logs!r}"
        time.sleep(0.5)

    events = devenvd.cli("events", "it-life", check=True).stdout
    assert "up (new)" in events and "rebuild" in events and "starting -> running" in events

    assert "home volume kept" in devenvd.cli("rm", "it-life", "--keep-volume", check=True).stdout
    assert client.volumes.get(volume_name("it-life")) is not None
    assert not client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}=it-life"})
    devenvd.cli("up", cwd=folder, check=True)  # the kept home comes back with its files
    kept = devenvd.cli("exec", "it-life", "--", "sha256sum", "/home/dev/data.txt", check=True)
    assert kept.stdout.split()[0] == checksum
    devenvd.cli("rm", "it-life", check=True)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(volume_name("it-life"))


def test_exec_streams_output_and_propagates_exit_codes(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    folder = project(light_image, tmp_path / "p", name="it-exec")
    devenvd.cli("up", cwd=folder, check=True)
    result = devenvd.cli("exec", "it-exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert devenvd.cli("exec", "it-exec", "--", "true").returncode == 0
    assert devenvd.cli("exec", "it-exec", "--", "false").returncode == 1
    who = devenvd.cli("exec", "it-exec", "--", "id", "-un", check=True)
    assert who.stdout.strip() == "dev"
    missing = devenvd.cli("exec", "it-exec", "--", "no-such-program")
    assert missing.returncode != 0
    big = devenvd.cli("exec", "it-exec", "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x", check=True)
    assert len(big.stdout) == 3_000_000


def test_bad_input_is_met_with_clear_errors_and_nothing_half_made(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    unknown = devenvd.cli("stop", "it-ghost")
    assert unknown.returncode == 1 and "no workspace named 'it-ghost'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    broken = project(light_image, tmp_path / "bad", name="it-bad", extra="gpus: 2\n")
    invalid = devenvd.cli("up", cwd=broken)
    assert invalid.returncode == 2 and "devenv.yaml:" in invalid.stderr and "gpus" in invalid.stderr

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        porty = project(light_image, tmp_path / "porty", name="it-porty", extra=f"ports: [{port}]\n")
        refused = devenvd.cli("up", cwd=porty)
        assert refused.returncode == 1 and str(port) in refused.stderr and "port_in_use" in refused.stderr
    finally:
        taken.close()
    assert "it-porty" not in devenvd.workspaces()
    assert not client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}=it-porty"})
    assert not client.volumes.list(filters={"label": f"{LABEL_WORKSPACE}=it-porty"})


def test_an_engine_that_does_not_answer_is_named(light_image: WorkspaceImage, tmp_path: Path) -> None:
    daemon = Devenvd()
    (daemon.home / "daemon.yaml").write_text("backends:\n  dead: {type: docker, url: 'tcp://127.0.0.1:1'}\n")
    daemon.start()
    try:
        folder = project(light_image, tmp_path / "p", name="it-dead", extra="backend: dead\n")
        result = daemon.cli("up", cwd=folder)
        assert result.returncode == 1 and "tcp://127.0.0.1:1" in result.stderr and "does not answer" in result.stderr
        assert daemon.workspaces() == {}
    finally:
        daemon.cleanup()


def test_the_cli_starts_a_daemon_when_none_answers(light_image: WorkspaceImage, tmp_path: Path) -> None:
    daemon = Devenvd()  # not started: the CLI must start it
    try:
        assert daemon.cli("daemon", "status").returncode == 1
        listed = daemon.cli("ls", check=True)
        assert "NAME" in listed.stdout
        status = daemon.cli("daemon", "status", check=True)
        assert "running" in status.stdout
        assert "devenvd" in daemon.cli("daemon", "logs", check=True).stdout
        assert daemon.cli("daemon", "stop", check=True).returncode == 0
        assert daemon.cli("daemon", "status").returncode == 1
    finally:
        daemon.cleanup()


def test_concurrent_ups_ten_names_and_one_name(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    folder = project(light_image, tmp_path / "p", name="it-many")
    names = [f"it-many-{i}" for i in range(10)]
    ups = [devenvd.popen("up", "--name", name, cwd=folder) for name in names]
    same = [devenvd.popen("up", "--name", "it-many-same", cwd=folder) for _ in range(4)]
    for process in ups + same:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{out}\n{err}\n{devenvd.log_tail()}"
    listed = devenvd.workspaces()
    assert {*names, "it-many-same"} <= set(listed)
    assert all(listed[name]["state"] == "running" for name in [*names, "it-many-same"])
    same_containers = client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}=it-many-same"})
    assert len(same_containers) == 1


def test_devenv_ssh_gets_in_with_a_certificate_and_a_bare_key_does_not(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    folder = project(light_image, tmp_path / "p", name="it-ssh")
    devenvd.cli("up", cwd=folder, check=True)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    deadline = time.monotonic() + 30
    while (first := devenvd.cli("ssh", "-i", str(key), "it-ssh", "-o", "BatchMode=yes", "--", "whoami")).returncode:
        assert time.monotonic() < deadline, first.stderr  # sshd makes its host keys as the container starts
        time.sleep(0.5)
    assert first.stdout == "dev\n"
    second = devenvd.cli("ssh", "-i", str(key), "it-ssh", "-o", "BatchMode=yes", "--", "echo", "again", check=True)
    assert second.stdout == "again\n"
    issued = [
        line for line in devenvd.cli("events", "it-ssh", check=True).stdout.splitlines() if "SSH certificate" in line
    ]
    assert len(issued) == 1  # the second login reused the cached certificate
    port = devenvd.workspaces()["it-ssh"]["ssh_port"]
    bare = subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "CertificateFile=none",
            "-p",
            str(port),
            "dev@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
    )
    assert bare.returncode == 255 and "Permission denied" in bare.stderr
    devenvd.cli("rebuild", "it-ssh", cwd=folder, check=True)  # a new container, new host keys: still fine
    deadline = time.monotonic() + 30
    while (after := devenvd.cli("ssh", "-i", str(key), "it-ssh", "-o", "BatchMode=yes", "--", "true")).returncode:
        assert time.monotonic() < deadline, after.stderr
        time.sleep(0.5)
