"""Workspaces are isolated from one another (DESIGN.md, "The API"), shown on the real engine with a real
devenvd and the real CLI: a network each, so that from workspace A neither B's sshd nor its JupyterLab
answers while the engine's host (and so the daemon) still reaches both; no-new-privileges; no NET_RAW;
a pids limit; and `devenv rm` takes the network away with the workspace.

Every "cannot" below follows a positive control through the same probe, and every probe is bounded by
a connect timeout: a connection that is silently dropped (Docker's DOCKER-ISOLATION chains) shows as a
timeout, never as a hang.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest
from docker.models.containers import Container

from devenv.backends.base import SSH_PORT, container_name
from devenv.backends.isolation import CAPABILITIES, PIDS_LIMIT, network_name
from devenv.testing.network import ENGINE_HOST_NAME, engine_host_address
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd

A, B = "it-iso-a", "it-iso-b"
JUPYTER_PORT = 8888
CONNECT_TIMEOUT = 3.0  # seconds a probe waits for a connection: a dropped SYN shows as "timeout"

# Run inside a workspace: connect to each (host, port) with a timeout, read what the server says first.
PROBE = r"""
import json, socket, sys
results = []
for host, port, timeout in json.loads(sys.argv[1]):
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            try:
                data = conn.recv(64)
            except socket.timeout:
                data = b""  # a server that waits for the client to speak first (HTTP)
            results.append("open:" + data.decode(errors="replace"))
    except socket.timeout:
        results.append("timeout")
    except ConnectionRefusedError:
        results.append("refused")
    except OSError as error:
        results.append("error:" + str(error))
print(json.dumps(results))
"""

# Run as root inside a workspace: what the kernel says about its privileges.
PRIVILEGES = r"""
import json, socket
found = {}
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    found["raw"] = "opened"
except PermissionError:
    found["raw"] = "refused"
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the control: an ordinary socket still opens
udp.close()
found["udp"] = "opened"
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
found["uid"] = status["Uid"].split()[0]
found["no_new_privs"] = status["NoNewPrivs"].strip()
found["cap_bnd"] = int(status["CapBnd"].strip(), 16)
for path in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
    try:
        found["pids_max"] = open(path).read().strip()
        break
    except OSError:
        pass
print(json.dumps(found))
"""
CAP_NET_RAW, CAP_CHOWN = 13, 0  # bit numbers in /proc/PID/status Cap* masks (linux/capability.h)


@dataclass
class Pair:
    daemon: Devenvd
    client: docker.DockerClient

    def container(self, workspace: str) -> Container:
        return self.client.containers.get(container_name(workspace))

    def address(self, workspace: str) -> str:
        networks = self.container(workspace).attrs["NetworkSettings"]["Networks"]
        return str(networks[network_name(workspace)]["IPAddress"])

    def probe(self, workspace: str, targets: list[tuple[str, int]]) -> list[str]:
        """From inside `workspace` (a docker exec, so not through the network): each target's outcome."""
        argv = json.dumps([[host, port, CONNECT_TIMEOUT] for host, port in targets])
        code, output = self.container(workspace).exec_run(["python3", "-c", PROBE, argv], user="dev")
        assert code == 0, output.decode(errors="replace")
        return list(json.loads(output.decode()))


def greeting(address: str, port: int, *, within: float = 120.0) -> bytes:
    """What `address:port` says first, polled from the engine's host until it answers (a bounded wait)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT) as conn:
                conn.settimeout(CONNECT_TIMEOUT)
                if port == JUPYTER_PORT:  # HTTP: the client speaks first
                    conn.sendall(b"GET /api HTTP/1.0\r\n\r\n")
                if data := conn.recv(64):
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing answered on {address}:{port} within {within:.0f}s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def pair(
    workspace_image: WorkspaceImage, client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two workspaces with sshd and JupyterLab, up through one real daemon."""
    daemon = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    folder = tmp_path_factory.mktemp("isolation")
    try:
        for workspace in (A, B):
            project = copy_project(workspace_image, folder / workspace, workspace)
            assert f"{workspace}: running" in daemon.cli("up", cwd=project, check=True).stdout
        yield Pair(daemon, client)
    finally:
        daemon.cleanup()


@pytest.fixture
def engine_host_server(client: docker.DockerClient) -> Iterator[int]:
    """A TCP server on the engine's host (the default bridge's gateway) that greets "hello": what a
    workspace reaches as host.docker.internal, like the tests' git and S3 servers. Yields its port."""
    server = socket.create_server((engine_host_address(client), 0))
    server.settimeout(0.5)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stopping.set()
    thread.join(timeout=5)
    server.close()


def test_from_one_workspace_the_other_cannot_be_reached(pair: Pair, engine_host_server: int, tmp_path: Path) -> None:
    a, b = pair.address(A), pair.address(B)
    assert network_name(A) != network_name(B) and a != b
    # The engine's host reaches both workspaces on their own networks: their services are up.
    for address in (a, b):
        assert greeting(address, SSH_PORT).startswith(b"SSH-2.0-")
        assert greeting(address, JUPYTER_PORT).startswith(b"HTTP/1.")
    # ...and the daemon does, through its Jupyter proxy to B's internal address.
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        deadline = time.monotonic() + 90
        while True:  # a login link is good once: a fresh one while JupyterLab starts
            link = pair.daemon.cli("jupyter", B, "--no-browser", check=True).stdout.strip().splitlines()[0]
            page = browser.get(link)
            if page.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert page.status_code == 200 and "JupyterLab" in page.text, page.text[:300]

    b_published_ssh = int(pair.daemon.workspaces()[B]["ssh_port"])  # on the engine's 127.0.0.1 only
    own_sshd, own_jupyter, engine_host, b_sshd, b_jupyter, b_published = pair.probe(
        A,
        [
            (a, SSH_PORT),
            (a, JUPYTER_PORT),
            (ENGINE_HOST_NAME, engine_host_server),
            (b, SSH_PORT),
            (b, JUPYTER_PORT),
            (ENGINE_HOST_NAME, b_published_ssh),
        ],
    )
    # positive controls first: the probe connects, from A, to A itself and to the engine's host
    assert own_sshd.startswith("open:SSH-2.0-"), own_sshd
    assert own_jupyter.startswith("open:"), own_jupyter
    assert engine_host == "open:hello\n", engine_host
    # then B: dropped between the bridges (a timeout), never answering
    assert not b_sshd.startswith("open:"), b_sshd
    assert not b_jupyter.startswith("open:"), b_jupyter
    assert not b_published.startswith("open:"), b_published  # the published port is on 127.0.0.1 only
    # and the other way round
    (a_sshd,) = pair.probe(B, [(a, SSH_PORT)])
    assert not a_sshd.startswith("open:"), a_sshd


def test_no_new_privileges_no_raw_sockets_and_a_pids_limit(pair: Pair) -> None:
    container = pair.container(A)
    host = container.attrs["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["CapDrop"] == ["ALL"] and set(host["CapAdd"]) == set(CAPABILITIES) and "NET_RAW" not in host["CapAdd"]
    assert host["PidsLimit"] == PIDS_LIMIT
    assert set(container.attrs["NetworkSettings"]["Networks"]) == {network_name(A)}  # not on the default bridge

    code, output = container.exec_run(["python3", "-c", PRIVILEGES], user="root")
    assert code == 0, output.decode(errors="replace")
    found = json.loads(output.decode())
    assert found["uid"] == "0" and found["udp"] == "opened"  # root, and ordinary sockets work
    assert found["cap_bnd"] & (1 << CAP_CHOWN)  # root keeps what sshd needs...
    assert not found["cap_bnd"] & (1 << CAP_NET_RAW)  # ...but not NET_RAW, not even in the bounding set
    assert found["raw"] == "refused"
    assert found["no_new_privs"] == "1"
    assert found["pids_max"] == str(PIDS_LIMIT)


def test_rm_takes_the_network_away_with_the_workspace(pair: Pair) -> None:
    assert pair.client.networks.get(network_name(A)).attrs["Labels"]["devenv.workspace"] == A  # the control
    pair.daemon.cli("rm", A, check=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            pair.client.networks.get(network_name(A))
        except docker.errors.NotFound:
            break
        assert time.monotonic() < deadline, f"{network_name(A)} is still there after `devenv rm {A}`"
        time.sleep(0.2)
    assert pair.client.networks.get(network_name(B))  # B's own is untouched
