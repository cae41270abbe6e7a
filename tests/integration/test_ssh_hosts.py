"""Workspaces on a Docker host over SSH: a real sshd host with its own address, real keys, the real CLI.

The host (harness.ssh_host) is a container with sshd on its own IP whose `docker` reaches this
machine's engine; devenv reaches it only through SSH (the SDK's dial-stdio channels and tunnels).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from devenv.backends.base import Handle, container_name
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.ssh_host import SshDockerHost, remove_all_ssh_hosts, start_ssh_host

NO_AGENT = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}


@pytest.fixture(scope="module")
def host(cpu_base: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshDockerHost]:
    started = start_ssh_host("devenv-it-host-a", index=0, workdir=tmp_path_factory.mktemp("host-a"))
    try:
        yield started
    finally:
        started.remove()


@pytest.fixture
def daemon() -> Iterator[Devenvd]:
    """A devenvd reconciling every second, whose SSH connections give up on a gone host within seconds."""
    running = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "1"})
    running.start()
    yield running
    running.cleanup()


def add(daemon: Devenvd, host: SshDockerHost, name: str = "a") -> None:
    daemon.cli(
        "host", "add", name, host.url, "--identity", str(host.identity), "--trust", host.fingerprint(), check=True
    )


def hosts(daemon: Devenvd) -> dict[str, dict[str, object]]:
    return {item["name"]: item for item in json.loads(daemon.cli("host", "ls", "--json", check=True).stdout)}


def user_key(folder: Path) -> Path:
    key = folder / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_first_contact_needs_the_fingerprint_and_a_wrong_one_adds_nothing(daemon: Devenvd, host: SshDockerHost) -> None:
    unconfirmed = daemon.cli("host", "add", "a", host.url, "--identity", str(host.identity), input="")
    assert unconfirmed.returncode == 2, unconfirmed.stderr
    assert host.fingerprint() in unconfirmed.stderr and "--trust" in unconfirmed.stderr
    wrong = daemon.cli("host", "add", "a", host.url, "--identity", str(host.identity), "--trust", "SHA256:" + "A" * 43)
    assert wrong.returncode != 0 and host.fingerprint() in wrong.stderr
    assert "a" not in hosts(daemon)
    assert not (daemon.home / "known_hosts").exists() or host.address not in (daemon.home / "known_hosts").read_text()

    not_ours = user_key(daemon.home)
    refused = daemon.cli("host", "add", "a", host.url, "--identity", str(not_ours), "--trust", host.fingerprint())
    assert refused.returncode != 0 and "refused devenv's key" in refused.stderr, refused.stderr
    assert "a" not in hosts(daemon)

    added = daemon.cli(
        "host", "add", "a", host.url, "--identity", str(host.identity), "--trust", host.fingerprint(), check=True
    )
    version = docker.from_env().version()["Version"]
    assert f"Docker {version}" in added.stdout
    pinned = (daemon.home / "known_hosts").read_text()
    assert host.host_public_key().split()[1] in pinned
    assert host.identity.read_text().strip() not in (daemon.home / "devenv.db").read_bytes().decode(errors="replace")
    listed = hosts(daemon)["a"]
    facts = listed["facts"]
    assert listed["reachable"] and isinstance(facts, dict)
    assert facts["engine_version"] == version and facts["disk_free_bytes"] > 0
    assert facts["gpus"] == [] and "nvidia-smi not found" in facts["gpu_note"]
    again = daemon.cli("host", "add", "a", host.url, "--identity", str(host.identity))
    assert again.returncode != 0 and "already" in again.stderr


def test_a_workspace_on_the_host_by_ssh_exec_and_jupyter_through_tunnels(
    daemon: Devenvd, host: SshDockerHost, workspace_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    add(daemon, host)
    folder = copy_project(workspace_image, tmp_path / "p", "it-remote")
    up = daemon.cli("up", "--on", "a", cwd=folder, check=True)
    assert "it-remote: running on a" in up.stdout
    ws = daemon.workspaces()["it-remote"]
    assert ws["backend"] == "a" and ws["ssh_port"]
    container = client.containers.get(container_name("it-remote"))
    assert container.labels["devenv.backend"] == "a"
    assert "22/tcp" not in (container.attrs["HostConfig"]["PortBindings"] or {})  # nothing published on the host
    assert daemon.cli("exec", "it-remote", "--", "hostname", check=True).stdout.strip() == "it-remote"

    key = user_key(tmp_path)
    env = {**NO_AGENT, **daemon.env}
    deadline = time.monotonic() + 60
    while True:
        ran = subprocess.run(
            ["devenv", "ssh", "-i", str(key), "it-remote", "-o", "BatchMode=yes", "--", "cat", "/etc/hostname"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if ran.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ran.returncode == 0 and ran.stdout.strip() == "it-remote", ran.stderr
    config = tmp_path / "ssh_config"
    daemon.cli("ssh-config", "-i", str(key), "--config", str(config), check=True)
    plain = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "it-remote.devenv", "hostname"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert plain.returncode == 0 and plain.stdout.strip() == "it-remote", plain.stderr  # plain ssh, VS Code's path

    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        deadline = time.monotonic() + 90
        while True:  # a login link is good once: a fresh one while JupyterLab starts
            link = daemon.cli("jupyter", "it-remote", "--no-browser", check=True).stdout.strip().splitlines()[0]
            page = browser.get(link)
            if page.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert page.status_code == 200 and "JupyterLab" in page.text, page.text[:300]
        status = browser.get(link.split("/jupyter/")[0] + "/jupyter/it-remote/api/status")
        assert status.status_code == 200 and "started" in status.json()

    local_only = hosts(daemon)
    assert local_only["a"]["workspaces"] == 1 and local_only["local"]["workspaces"] == 0
    refused = daemon.cli("host", "rm", "a")
    assert refused.returncode != 0 and "it-remote" in refused.stderr
    daemon.cli("rm", "it-remote", check=True)
    daemon.cli("host", "rm", "a", check=True)
    assert "a" not in hosts(daemon)
    assert host.address not in (daemon.home / "known_hosts").read_text()


def test_a_host_that_goes_away_leaves_its_workspace_lost_and_it_comes_back(
    daemon: Devenvd, host: SshDockerHost, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    add(daemon, host)
    folder = copy_project(light_image, tmp_path / "p", "it-away")
    daemon.cli("up", "--on", "a", cwd=folder, check=True)
    daemon.cli("exec", "it-away", "--", "sh", "-c", "echo kept > ~/note", check=True)
    host.stop()
    try:
        lost = daemon.wait_for("it-away", "lost", timeout=60)
        assert "a does not answer" in lost["reason"] and host.address in lost["reason"]
        failed = daemon.cli("exec", "it-away", "--", "true")
        assert failed.returncode != 0 and "lost" in failed.stderr
        unreachable = hosts(daemon)["a"]
        assert not unreachable["reachable"] and unreachable["error"]
        during = daemon.cli("start", "it-away")  # an operation while the host is away: failed, with the reason
        assert during.returncode != 0 and host.address in during.stderr
        record = daemon.workspaces()["it-away"]
        assert record["state"] == "failed" and host.address in record["reason"]
    finally:
        host.start()
    daemon.wait_for("it-away", "running", timeout=90)  # the failed start is retried once the host answers
    assert daemon.cli("exec", "it-away", "--", "cat", "/home/dev/note", check=True).stdout == "kept\n"


def run_in_terminal(daemon: Devenvd, argv: list[str], answers: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal (it prompts only there), answering each prompt as it appears."""
    import pty
    import select

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        ["devenv", *argv], stdin=follower, stdout=follower, stderr=follower, env=daemon.env, close_fds=True
    )
    os.close(follower)
    seen, pending = "", dict(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096).decode(errors="replace")
            except OSError:  # the CLI exited and the terminal closed
                break
            seen += chunk
            for prompt in [prompt for prompt in pending if prompt in seen]:
                os.write(leader, pending.pop(prompt).encode())
        elif process.poll() is not None:
            break
    code = process.wait(timeout=10)
    os.close(leader)
    return code, seen


def test_on_a_terminal_first_contact_asks_and_only_a_yes_adds(daemon: Devenvd, host: SshDockerHost) -> None:
    base = ["host", "add", "a", host.url, "--identity", str(host.identity)]
    code, said = run_in_terminal(daemon, base, {"[y/N]": "n\n"})
    assert code == 2 and host.fingerprint() in said and "not added" in said, said
    assert "a" not in hosts(daemon)
    code, said = run_in_terminal(daemon, base, {"[y/N]": "y\n"})
    assert code == 0 and f"Trust {host.fingerprint()} for a?" in said and "added a" in said, said
    assert hosts(daemon)["a"]["reachable"]


def test_a_changed_host_key_is_refused(daemon: Devenvd, host: SshDockerHost) -> None:
    add(daemon, host, "keyed")
    before = host.fingerprint()
    host.rekey()
    try:
        listed = hosts(daemon)["keyed"]
        assert not listed["reachable"] and "CHANGED" in str(listed["error"]) and before in str(listed["error"])
        assert host.fingerprint() in str(listed["error"])
    finally:
        daemon.cli("host", "rm", "keyed", check=True)  # forgets the pin: the next add asks again
    asked = daemon.cli("host", "add", "keyed", host.url, "--identity", str(host.identity), input="")
    assert asked.returncode == 2 and host.fingerprint() in asked.stderr


FAKE_SMI = """#!/bin/sh
# stands in for the driver's nvidia-smi on a GPU-less test machine: GPU 1 is busy with someone's job
cat <<'CSV'
0, NVIDIA A100-SXM4-80GB, 81920, 3, 0
1, NVIDIA A100-SXM4-80GB, 81920, 40000, 97
CSV
"""


def test_on_auto_goes_where_the_gpus_are_free_and_asks_the_engine_for_those(
    daemon: Devenvd, host: SshDockerHost, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    (tmp_path / "host-b").mkdir()
    gpu_host = start_ssh_host("devenv-it-host-b", index=1, workdir=tmp_path / "host-b")
    try:
        gpu_host.put_file("/usr/local/bin/nvidia-smi", FAKE_SMI)
        add(daemon, host, "a")
        add(daemon, gpu_host, "b")
        listed = hosts(daemon)
        facts = listed["b"]["facts"]
        assert isinstance(facts, dict) and facts["free_gpus"] == 1 and len(facts["gpus"]) == 2
        assert "A100" in daemon.cli("host", "ls", check=True).stdout

        two = copy_project(light_image, tmp_path / "two", "it-gpu2", replace={"cpu: 2": "cpu: 2\n  gpu: A100:2"})
        refused = daemon.cli("up", "--on", "auto", cwd=two)
        assert refused.returncode != 0 and "no host has 2 free A100" in refused.stderr
        assert "b: 1 free of 2" in refused.stderr and "a: 0 free of 0" in refused.stderr
        assert "it-gpu2" not in daemon.workspaces()

        one = copy_project(light_image, tmp_path / "one", "it-gpu1", replace={"cpu: 2": "cpu: 2\n  gpu: A100:1"})
        placed = daemon.cli("up", "--on", "auto", cwd=one)
        # this machine has no NVIDIA runtime: the engine refuses to start it, after devenv asked for GPU 0 of b
        assert placed.returncode != 0
        events = daemon.cli("events", "it-gpu1", check=True).stdout
        assert "placed on b" in events and "GPUs 0 of b (NVIDIA A100-SXM4-80GB)" in events
        assert "gpu" in placed.stderr.lower()
    finally:
        gpu_host.remove()


def test_a_container_made_through_the_host_carries_the_chosen_gpus(
    host: SshDockerHost, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    from devenv.backends.base import LaunchRequest
    from devenv.backends.docker import DockerBackend
    from devenv.backends.ssh.known_hosts import KnownHosts
    from devenv.backends.ssh.session import SshSession, load_private_key
    from devenv.backends.ssh.target import parse_target

    known = KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none")
    session = SshSession(parse_target(host.url), load_private_key(host.identity.read_text()), known)
    session.transport(trust=host.fingerprint())
    backend = DockerBackend("gpu-test", session=session)
    request = LaunchRequest(
        workspace="it-devices",
        owner="t",
        image=light_image.tag,
        image_hash="h",
        gpu_count=2,
        gpu_kind="A100",
        gpu_ids=("1", "3"),
    )
    try:
        handle = backend.create(request)
        host_config = client.api.inspect_container(handle.container)["HostConfig"]
        assert host_config["DeviceRequests"] == [
            {"Driver": "", "Count": 0, "DeviceIDs": ["1", "3"], "Capabilities": [["gpu"]], "Options": {}}
        ]
        labels = client.api.inspect_container(handle.container)["Config"]["Labels"]
        assert labels["devenv.gpu-ids"] == "1,3" and labels["devenv.backend"] == "gpu-test"
        assert [seen.gpu_ids for seen in backend.list_workspaces()] == [("1", "3")]
    finally:
        backend.remove(Handle.for_workspace("it-devices"), keep_volume=False)
        backend.close()


def teardown_module() -> None:
    remove_all_ssh_hosts()
