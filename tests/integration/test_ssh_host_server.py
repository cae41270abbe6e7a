"""The SSH Docker host fixture (harness.ssh_host) is a real sshd in front of the real engine: key auth
only, a pinned host key, `docker system dial-stdio` over SSH, reach into the default bridge, and a stable
address across stop/start: the ground the "Docker hosts over SSH" tests stand on."""

from __future__ import annotations

import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devenv.lock.models import BaseImage
from harness.ssh_host import LABELS, SshDockerHost, start_ssh_host

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def host(cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshDockerHost]:
    made = start_ssh_host("devenv-it-host-a", workdir=tmp_path_factory.mktemp("ssh-host"))
    try:
        yield made
    finally:
        made.remove()


def pinned(host: SshDockerHost, directory: Path) -> Path:
    """A known_hosts file holding only the host's current key."""
    known = directory / f"known_hosts-{host.fingerprint()[7:15].replace('/', '_')}"
    known.write_text(host.known_hosts_line() + "\n")
    return known


def ssh(
    host: SshDockerHost, known_hosts: Path, command: str | None, *options: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Real OpenSSH as `op`, with only the fixture's key and only the pinned host key trusted."""
    args = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(host.identity),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        *options,
        f"{host.user}@{host.address}",
    ]
    if command is not None:
        args.append(command)
    return subprocess.run(args, capture_output=True, text=True, timeout=60, input=stdin)


def test_ssh_reaches_the_local_engine_through_the_remote_docker_cli(
    host: SshDockerHost, client: docker.DockerClient, tmp_path: Path
) -> None:
    done = ssh(host, pinned(host, tmp_path), "docker version --format '{{.Server.Version}}'")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == client.version()["Version"]


def test_password_and_keyboard_interactive_logins_are_not_offered(host: SshDockerHost, tmp_path: Path) -> None:
    done = ssh(
        host,
        pinned(host, tmp_path),
        "true",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
    )
    assert done.returncode == 255
    assert "Permission denied (publickey)." in done.stderr  # the server lists publickey as its only method


def test_fingerprint_matches_what_the_server_presents(host: SshDockerHost) -> None:
    scanned = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", host.address], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    listed = subprocess.run(
        ["ssh-keygen", "-lf", "-"], input=scanned, capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert listed[1] == host.fingerprint()
    assert listed[1].startswith("SHA256:")
    assert scanned.split(maxsplit=1)[1].strip() == host.known_hosts_line().split(maxsplit=1)[1]


def test_docker_cli_ssh_transport_works_in_ssh_env(
    host: SshDockerHost, client: docker.DockerClient, tmp_path: Path
) -> None:
    env = host.ssh_env(tmp_path)
    done = subprocess.run(
        ["docker", "-H", host.url, "version", "--format", "{{.Server.Version}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == client.version()["Version"]
    whoami = subprocess.run(["ssh", host.address, "whoami"], env=env, capture_output=True, text=True, timeout=60)
    assert (whoami.returncode, whoami.stdout.strip()) == (0, host.user), whoami.stderr


def test_host_reaches_containers_on_a_workspace_network(
    host: SshDockerHost, client: docker.DockerClient, cpu_base: BaseImage, tmp_path: Path
) -> None:
    """As a real host reaches every bridge of its engine: the test host joins each workspace network made
    through a host (labelled so), which Docker's isolation between bridges would otherwise cut off."""
    network = client.networks.create(
        f"devenv-it-probe-{tmp_path.name[-8:]}",
        driver="bridge",
        labels={**LABELS, "devenv.role": "network", "devenv.backend": "it-host"},
    )
    server = client.containers.run(
        cpu_base.image,
        ["python3", "-m", "http.server", "8000"],
        detach=True,
        labels=LABELS,
        network=network.name,
        working_dir="/etc",
    )
    try:
        server.reload()
        ip = server.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        assert ip
        probe = (
            "import time, urllib.request\n"
            "for _ in range(100):\n"
            "    try:\n"
            f"        print(urllib.request.urlopen('http://{ip}:8000/hostname', timeout=5).read().decode())\n"
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.1)\n"
        )
        done = ssh(host, pinned(host, tmp_path), f"python3 -c {shlex.quote(probe)}")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == server.id[:12]  # /etc/hostname of the server container
        # the same target through an SSH direct-tcpip channel (what the daemon opens), from this machine
        tunnel = ssh(host, pinned(host, tmp_path), None, "-W", f"{ip}:8000", stdin="GET /hostname HTTP/1.0\r\n\r\n")
        assert tunnel.returncode == 0, tunnel.stderr
        assert tunnel.stdout.startswith("HTTP/1.0 200")
        assert tunnel.stdout.rstrip().endswith(server.id[:12])
    finally:
        server.remove(force=True)
        network.reload()
        for joined in network.containers:
            network.disconnect(joined, force=True)
        network.remove()


def test_stop_and_start_keep_the_address_and_host_key(host: SshDockerHost, tmp_path: Path) -> None:
    before = host.fingerprint()
    host.stop()
    try:
        with pytest.raises(OSError), socket.create_connection((host.address, 22), timeout=3):
            pass
    finally:
        host.start()
    with socket.create_connection((host.address, 22), timeout=3) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")
    assert host.fingerprint() == before
    done = ssh(host, pinned(host, tmp_path), "echo back")
    assert (done.returncode, done.stdout.strip()) == (0, "back"), done.stderr


def test_rekey_is_detected_by_a_pinned_client(host: SshDockerHost, tmp_path: Path) -> None:
    old_fingerprint, old_known = host.fingerprint(), pinned(host, tmp_path)
    host.rekey()
    assert host.fingerprint() != old_fingerprint
    refused = ssh(host, old_known, "true")
    assert refused.returncode == 255
    assert (
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr or "Host key verification failed" in refused.stderr
    ), refused.stderr
    accepted = ssh(host, pinned(host, tmp_path), "echo rekeyed")
    assert (accepted.returncode, accepted.stdout.strip()) == (0, "rekeyed"), accepted.stderr
