"""A workspace container as the daemon runs it (no command): supervised sshd and JupyterLab under tini,
the Jupyter token kept secret, real SSH logins, a real busy kernel, and the idle probe that sees them."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from devenv.access.ssh_ca import SshCertificateAuthority
from devenv.backends.base import Handle
from devenv.backends.docker import DockerBackend
from devenv.daemon.background.idle import IdleThresholds, assess, parse_probe
from devenv.testing.projects import WorkspaceImage
from harness.jupyter import BUSY_CELL

PROBE = ["/usr/bin/python3", "/opt/devenv/bin/idle-probe"]
TOKEN_FILE = "/run/devenv/jupyter-token"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Workspace:
    container: Container
    ssh_port: int


def start_workspace(client: docker.DockerClient, image: str) -> Workspace:
    """Detached, no command, port 22 on an ephemeral loopback port: the way the daemon starts one."""
    container = client.containers.run(
        image,
        detach=True,
        name=f"devenv-it-ws-{uuid.uuid4().hex[:8]}",
        environment={"DEVENV_SSH": "1", "DEVENV_JUPYTER": "1"},
        ports={"22/tcp": ("127.0.0.1", None)},
    )
    container.reload()
    return Workspace(container, int(container.ports["22/tcp"][0]["HostPort"]))


def remove(container: Container) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)


def run(container: Container, *command: str, user: str = "root") -> str:
    result = container.exec_run(list(command), user=user, demux=True)
    out, err = (part.decode(errors="replace") if part else "" for part in result.output)
    assert result.exit_code == 0, f"{command} exited {result.exit_code}:\n{out}{err}"
    return out


def probe(container: Container) -> dict[str, Any]:
    return json.loads(run(container, *PROBE))


def wait_for(what: str, check: Callable[[], Any], container: Container, timeout: float = START_TIMEOUT_S) -> Any:
    """Poll `check` until it returns something truthy; fail with the container's log tail otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = container.logs(tail=40).decode(errors="replace")
            pytest.fail(f"{what}: not within {timeout:.0f} s; container log tail:\n{logs}")
        time.sleep(0.5)


def jupyter_up(container: Container) -> dict[str, Any]:
    return wait_for("JupyterLab answering the idle probe", lambda: probe(container)["jupyter"], container)


def sshd_banner(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            return conn.recv(64)
    except OSError:
        return b""


def wait_for_sshd(workspace: Workspace) -> None:
    wait_for(
        "sshd's banner on the published port",
        lambda: sshd_banner(workspace.ssh_port).startswith(b"SSH-2.0-OpenSSH"),
        workspace.container,
    )


def pids(container: Container, pattern: str) -> list[str]:
    """PIDs (inside the container) of processes whose command line matches `pattern`."""
    result = container.exec_run(["pgrep", "-f", pattern])
    return result.output.decode().split() if result.exit_code == 0 else []


def start_busy_kernel(container: Container, seconds: int) -> str:
    return run(container, "/opt/devenv/venv/bin/python", "-c", BUSY_CELL, str(seconds), user="dev").strip()


@pytest.fixture(scope="module")
def workspace(client: docker.DockerClient, workspace_image: WorkspaceImage) -> Iterator[Workspace]:
    started = start_workspace(client, workspace_image.tag)
    try:
        jupyter_up(started.container)
        wait_for_sshd(started)
        yield started
    finally:
        remove(started.container)


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devenv-it", "-f", str(key)], check=True)
    return key


def authorize(container: Container, key: Path) -> None:
    """Let `key` in the way devenv does: a certificate from a CA the workspace's sshd trusts."""
    ca = SshCertificateAuthority(key.parent / "ca").ensure()
    cert = ca.sign(key.with_suffix(".pub").read_text(), key_id="it", principals=["it"], serial=1)
    key.with_name(key.name + "-cert.pub").write_text(cert.text + "\n")  # ssh picks it up beside the key
    files = {"ca.pub": (ca.public_key + "\n").encode(), "principals": b"it\n", "revoked.krl": ca.revocation_list()}
    DockerBackend("test").put_files(
        Handle(container=container.name, volume=""),  # as the daemon places them
        {f"/etc/devenv/ssh/{name}": data for name, data in files.items()},
    )


def ssh_command(key: Path, port: int, *extra: str) -> list[str]:
    return [
        "ssh",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-i",
        str(key),
        "-p",
        str(port),
        *extra,
        "dev@127.0.0.1",
    ]


# ---- tests ----


def test_services_come_up_under_tini_and_the_probe_reports_a_quiet_workspace(workspace: Workspace) -> None:
    container = workspace.container
    assert pids(container, r"^/usr/sbin/sshd -D -e|^sshd: /usr/sbin/sshd"), "no sshd listener"
    jupyter = pids(container, "jupyter-lab")
    assert jupyter, "no JupyterLab process"
    owner = run(container, "stat", "-c", "%U", f"/proc/{jupyter[0]}").strip()
    assert owner == "dev", f"JupyterLab runs as {owner}, not dev"
    assert run(container, "cat", "/proc/1/cmdline").split("\0")[:2] == ["/usr/bin/tini", "--"]

    sample = probe(container)
    assert sample["ssh_sessions"] == 0
    assert sample["jupyter"]["kernels"] == []
    assert isinstance(sample["jupyter"]["last_activity"], str)
    assert isinstance(sample["cpu_usec"], int) and sample["cpu_usec"] > 0
    assert sample["gpus"] is None  # no nvidia-smi here: no GPUs, and not an error
    assert "gpu_error" not in sample and "jupyter_error" not in sample
    parsed = parse_probe(json.dumps(sample))
    assert parsed.jupyter_running and parsed.busy_kernels == 0


def test_the_jupyter_token_is_the_owners_only_and_never_shown(
    client: docker.DockerClient, workspace: Workspace
) -> None:
    container = workspace.container
    assert run(container, "stat", "-c", "%a %U %G", "/run/devenv").strip() == "755 root root"
    # readable by root and the owner's sessions (group devenv-owner), never by a grantee's
    assert run(container, "stat", "-c", "%a %U %G", TOKEN_FILE).strip() == "640 root devenv-owner"
    token = run(container, "cat", TOKEN_FILE).strip()
    assert len(token) == 64 and int(token, 16) >= 0

    container.reload()
    inspected = json.dumps(container.attrs) + json.dumps(client.api.inspect_image(container.image.id))
    assert token not in inspected, "the Jupyter token is in docker inspect"
    top = container.top(ps_args="-eo pid,user,args")  # the host's ps over the container's processes
    command_lines = "\n".join(" ".join(process) for process in top["Processes"])
    assert "jupyter-lab" in command_lines
    assert token not in command_lines, "the Jupyter token is on a command line"
    assert token not in run(container, "ps", "-eo", "args"), "the Jupyter token is on a command line"
    assert token not in container.logs().decode(errors="replace"), "the Jupyter token is in the container's log"


NOTIFICATION_SETTINGS = """
import json, os, urllib.request
token = open("/run/devenv/jupyter-token").read().strip()
base = "http://127.0.0.1:8888/jupyter/" + os.environ.get("DEVENV_WORKSPACE", "workspace")
def get(path):
    request = urllib.request.Request(base + path, headers={"Authorization": "token " + token})
    return json.load(urllib.request.urlopen(request, timeout=10))
plugin = get("/lab/api/settings/@jupyterlab/apputils-extension:notification")
effective = {name: field.get("default") for name, field in plugin["schema"]["properties"].items()}
effective.update(plugin.get("settings") or {})  # what the frontend uses: the schema's defaults (with the
print(json.dumps({"settings": effective, "news": get("/lab/api/news")}))  # server's overrides), then the user's
"""


def test_jupyterlab_opens_without_the_news_prompt_or_an_update_check(workspace: Workspace) -> None:
    answered = json.loads(run(workspace.container, "/opt/devenv/venv/bin/python", "-c", NOTIFICATION_SETTINGS))
    assert answered["settings"]["fetchNews"] == "false"  # JupyterLab's own default is "none": it asks
    assert answered["settings"]["checkForUpdates"] is False
    assert answered["news"]["news"] == []


def test_jupyterlab_is_restarted_when_it_dies(workspace: Workspace) -> None:
    container = workspace.container
    (before,) = pids(container, "jupyter-lab")
    run(container, "kill", "-KILL", before)
    restarted = wait_for(
        "a new JupyterLab", lambda: [p for p in pids(container, "jupyter-lab") if p != before], container, timeout=15
    )
    assert restarted
    jupyter_up(container)
    assert "jupyter exited with status 137; restarting in 1 s" in container.logs(tail=200).decode(errors="replace")


def test_a_real_ssh_session_counts_and_makes_the_workspace_active(workspace: Workspace, ssh_key: Path) -> None:
    container = workspace.container
    authorize(container, ssh_key)
    before = parse_probe(run(container, *PROBE))
    session = subprocess.Popen(
        [*ssh_command(ssh_key, workspace.ssh_port), "sleep", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def counted() -> int:
            if session.poll() is not None:
                pytest.fail(f"ssh exited {session.returncode}: {session.communicate()[1]}")
            return probe(container)["ssh_sessions"]

        assert wait_for("the SSH session in the probe", counted, container, timeout=20) >= 1
        verdict = assess(before, parse_probe(run(container, *PROBE)), IdleThresholds())
        assert verdict.active
        assert "1 SSH session" in verdict.reasons
    finally:
        session.terminate()
        session.wait(timeout=10)
    wait_for(
        "the SSH session to end in the probe", lambda: probe(container)["ssh_sessions"] == 0, container, timeout=15
    )


def test_password_and_keyboard_interactive_logins_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    missing_key = tmp_path / "no-such-key"
    result = subprocess.run(
        [
            *ssh_command(
                missing_key, workspace.ssh_port, "-v", "-o", "PreferredAuthentications=password", "-o", "BatchMode=yes"
            ),
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 255, result.stderr
    # what the server offers, not just what the client tried
    offered = [line for line in result.stderr.splitlines() if "Authentications that can continue" in line]
    assert offered, result.stderr
    assert all(line.rstrip().endswith(": publickey") for line in offered), offered


def test_a_busy_kernel_shows_in_the_probe_and_keeps_the_workspace_active(workspace: Workspace) -> None:
    container = workspace.container
    before = parse_probe(run(container, *PROBE))
    kernel_id = start_busy_kernel(container, seconds=30)

    def busy() -> dict[str, Any] | None:
        kernels = probe(container)["jupyter"]["kernels"]
        return next((k for k in kernels if k["id"] == kernel_id and k["execution_state"] == "busy"), None)

    wait_for("the kernel busy in the probe", busy, container, timeout=45)  # a loaded 2-core machine is slow
    time.sleep(3)  # a cell that keeps running stays busy (nothing in it times out)
    later = parse_probe(run(container, *PROBE))
    assert later.busy_kernels == 1
    verdict = assess(before, later, IdleThresholds())
    assert verdict.active
    assert "kernel busy" in verdict.reasons


def test_docker_stop_is_prompt_even_with_a_busy_kernel(
    client: docker.DockerClient, workspace_image: WorkspaceImage
) -> None:
    started = start_workspace(client, workspace_image.tag)
    try:
        jupyter_up(started.container)
        wait_for_sshd(started)
        start_busy_kernel(started.container, seconds=120)
        began = time.monotonic()
        started.container.stop(timeout=10)
        took = time.monotonic() - began
        started.container.reload()
        exit_code = started.container.attrs["State"]["ExitCode"]
        logs = started.container.logs(tail=30).decode(errors="replace")
    finally:
        remove(started.container)
    assert took < 6.0, f"docker stop took {took:.1f} s (signals not forwarded?):\n{logs}"
    assert exit_code == 0, f"exit code {exit_code} (services killed, not stopped):\n{logs}"


def test_without_jupyterlab_the_probe_says_so_and_sshd_still_serves(
    client: docker.DockerClient, light_image: WorkspaceImage, ssh_key: Path
) -> None:
    started = start_workspace(client, light_image.tag)
    container = started.container
    try:
        wait_for_sshd(started)
        sample = probe(container)
        assert sample["jupyter"] is None and "jupyter_error" not in sample
        assert run(container, "bash", "-c", f"test ! -e {TOKEN_FILE} && echo absent").strip() == "absent"
        assert "JupyterLab is not installed" in container.logs().decode(errors="replace")

        authorize(container, ssh_key)
        login = subprocess.run(
            [*ssh_command(ssh_key, started.ssh_port), "id", "-un"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == "dev"

        # sshd is supervised too
        (listener,) = pids(container, r"sshd: /usr/sbin/sshd")
        run(container, "kill", "-KILL", listener)
        wait_for(
            "a new sshd listener",
            lambda: [p for p in pids(container, r"sshd: /usr/sbin/sshd") if p != listener],
            container,
            timeout=15,
        )
        wait_for_sshd(started)

        began = time.monotonic()
        container.stop(timeout=10)
        assert time.monotonic() - began < 3.0
    finally:
        remove(container)


def test_one_shot_commands_still_run_directly(client: docker.DockerClient, light_image: WorkspaceImage) -> None:
    output = client.containers.run(
        light_image.tag,
        ["bash", "-c", "echo $$ $PPID; ps -o comm= -p $PPID"],
        remove=True,
        environment={"DEVENV_SSH": "1"},
    )
    pid, parent, parent_name = output.decode().split()
    assert parent == "1" and parent_name == "tini", output  # exec'd: no supervisor in between
    assert int(pid) > 1
