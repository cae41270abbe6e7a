"""Revocation leaves nothing: every process a grantee started (over SSH, exec and JupyterLab, detached
with nohup, setsid, a double fork or `env -i`), their connections and their credentials end with their
access, while the owner's and another grantee's go on. A grantee reads none of the owner's own secrets
nor the owner's processes. Real parts: devenvd on TCP with tokens, real ssh, JupyterLab through the
proxy over HTTP and websockets, `ps` inside the container as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from devenv.testing.network import free_port
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.jupyter import ProxyLab, run_in_kernel

pytestmark = pytest.mark.timeout(900)

WS = "it-revoke"
NO_AGENT = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}
SECOND_SWEEP = 1.0  # the daemon sweeps again this long after a revoke (Access.apply)
BOUND = 5.0  # seconds a channel may take to close after the revoke (the figures printed are what counts)
# Detached three ways: nohup, a setsid'd double fork, and a wiped environment
DETACHED = (
    "nohup sleep {0}1 >/dev/null 2>&1 & setsid sh -c '(sleep {0}2 >/dev/null 2>&1 &)'; "
    "env -i /bin/sleep {0}3 >/dev/null 2>&1 & echo started"
)
KERNEL_DETACHED = (
    "import os, subprocess\n"
    "subprocess.Popen(['setsid', 'sh', '-c', '(sleep {0}1 >/dev/null 2>&1 &)'])\n"
    "print(os.getpid())"
)


@dataclass
class Team:
    owner: Devenvd
    people: dict[str, Devenvd]
    keys: dict[str, Path]
    values: dict[str, str]
    labs: list[ProxyLab] = field(default_factory=list)

    def ssh(self, person: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.people[person].cli(
            "ssh", "-i", str(self.keys[person]), WS, "-o", "BatchMode=yes", "--", command, timeout=timeout
        )

    def session(self, person: str, command: str) -> subprocess.Popen[str]:
        return self.people[person].popen("ssh", "-i", str(self.keys[person]), WS, "-o", "BatchMode=yes", "--", command)

    def exec(self, person: str, command: str, *, root: bool = False) -> subprocess.CompletedProcess[str]:
        return self.people[person].cli(
            "exec", WS, *(["--root"] if root else []), "--", "sh", "-c", command, timeout=120
        )

    def lab(self, person: str) -> ProxyLab:
        link = self.people[person].cli("jupyter", WS, "--no-browser", check=True).stdout.strip().splitlines()[0]
        made = ProxyLab(link, WS)
        self.labs.append(made)
        return made

    def plain_ssh(self, person: str) -> subprocess.CompletedProcess[str]:
        """The person's key and cached certificate straight at sshd, under the login the daemon named."""
        folder = self.people[person].home / "ssh"
        meta = json.loads((folder / f"{WS}.devenv.json").read_text())
        cert = folder / f"{WS}.devenv-cert.pub"
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.keys[person]),
                "-o",
                f"CertificateFile={cert}",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-p",
                str(meta["port"]),
                f"{meta['user']}@127.0.0.1",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=NO_AGENT,
        )


@pytest.fixture(scope="module")
def team(workspace_image: WorkspaceImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    import sys

    port = free_port()
    owner = Devenvd(env={"DEVENV_ACCESS_INTERVAL": "0.5", "DEVENV_RECONCILE_INTERVAL": "2"})
    owner.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    people: dict[str, Devenvd] = {"owner": owner}
    keys: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("revoke")
    values = {"OWNER_SECRET": "own-" + secrets.token_hex(8), "TEAM_SECRET": "team-" + secrets.token_hex(8)}
    made = Team(owner, people, keys, values)
    try:
        for person in ("alice", "bob"):
            token = subprocess.run(
                [sys.executable, "-m", "devenv.daemon.process.main", "token", "create", person],
                env=owner.env,
                text=True,
                capture_output=True,
                timeout=60,
                check=True,
            )
            people[person] = Devenvd(
                env={"DEVENV_HOST": f"http://127.0.0.1:{port}", "DEVENV_TOKEN": token.stdout.strip()}
            )
        for person in people:
            keys[person] = folder / f"{person}_ed25519"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", person, "-f", str(keys[person])], check=True
            )
        owner.cli("secret", "set", "OWNER_SECRET", input=values["OWNER_SECRET"] + "\n", check=True)
        owner.cli("secret", "set", "--team", "TEAM_SECRET", input=values["TEAM_SECRET"] + "\n", check=True)
        project = copy_project(workspace_image, folder / "project", WS, extra="secrets: [OWNER_SECRET, TEAM_SECRET]\n")
        owner.cli("up", cwd=project, check=True)
        yield made
    finally:
        for lab in made.labs:
            lab.close()
        owner.cleanup()
        for person, daemon in people.items():
            if person != "owner":
                daemon.stop()


def container_of(client: docker.DockerClient) -> Container:
    return client.containers.get(f"devenv-{WS}")


def processes(client: docker.DockerClient) -> list[tuple[int, set[int], str]]:
    """(pid, supplementary groups, command line) of every live process in the workspace, as root sees
    them (a zombie is dead already; its parent, or tini, reaps it)."""
    output = container_of(client).exec_run(["ps", "-eo", "pid=,stat=,supgid:200=,args="], user="root").output
    found = []
    for line in output.decode().splitlines():
        pid, stat, groups, args = [*line.split(None, 3), "", "", ""][:4]
        if not stat.startswith("Z"):
            found.append((int(pid), {int(gid) for gid in groups.split(",") if gid.isdigit()}, args))
    return found


def running(client: docker.DockerClient, *marks: str, seen: list[tuple[int, set[int], str]] | None = None) -> set[str]:
    """Which of the `sleep MARK` processes are running (now, or in `seen`)."""
    args = [args for _pid, _groups, args in (processes(client) if seen is None else seen)]
    return {mark for mark in marks if any(re.search(rf"\bsleep {mark}\b", line) for line in args)}


def until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def until_ssh_works(team: Team, person: str) -> None:
    until(f"{person}'s SSH login", lambda: team.ssh(person, "true").returncode == 0)


def gids(client: docker.DockerClient, person_login: str) -> set[int]:
    group = container_of(client).exec_run(["getent", "group", person_login, f"{person_login}-j"]).output.decode()
    return {int(line.split(":")[2]) for line in group.splitlines()}


def test_a_grantee_reads_neither_the_owners_own_secrets_nor_the_owners_processes(
    team: Team, client: docker.DockerClient
) -> None:
    values = team.values
    until_ssh_works(team, "owner")
    # positive controls, before anyone is granted: the owner reads their own secret
    assert team.exec("owner", "cat /run/devenv/secrets/OWNER_SECRET").stdout == values["OWNER_SECRET"]
    started = team.exec("owner", "OWNER_MARK=owner-env nohup sleep 4950 >/dev/null 2>&1 & echo $!")
    owner_pid = int(started.stdout.strip())

    team.owner.cli("access", "grant", WS, "alice", "--ssh", "--jupyter", check=True)
    until_ssh_works(team, "alice")
    assert team.ssh("alice", "whoami").stdout == "dev\n"
    login = json.loads((team.people["alice"].home / "ssh" / f"{WS}.devenv.json").read_text())["user"]
    assert login.startswith("dv-alice-")
    assert {int(gid) for gid in team.ssh("alice", "id -G").stdout.split()} & gids(client, login)

    # the owner's own secret left the running workspace at the grant; the team's stays, for both
    mine = team.ssh("alice", "cat /run/devenv/secrets/OWNER_SECRET")
    assert mine.returncode != 0 and values["OWNER_SECRET"] not in mine.stdout
    assert team.ssh("alice", "cat /run/devenv/secrets/TEAM_SECRET").stdout == values["TEAM_SECRET"]
    assert team.exec("owner", "cat /run/devenv/secrets/TEAM_SECRET").stdout == values["TEAM_SECRET"]
    assert values["OWNER_SECRET"] not in team.ssh("alice", "cat /run/devenv/secrets/env").stdout

    # the owner's processes: their environment and memory are the owner's (Landlock), though both are dev
    assert "owner-env" in team.exec("owner", f"tr '\\0' '\\n' </proc/{owner_pid}/environ").stdout
    for how in (team.ssh, team.exec):
        peek = how("alice", f"cat /proc/{owner_pid}/environ")
        assert peek.returncode != 0 and "Permission denied" in peek.stderr + peek.stdout, peek
    # JupyterLab's secret and the owner's kernels' connection files: the owner's group only
    assert len(team.exec("owner", "cat /run/devenv/jupyter-token").stdout.strip()) == 64
    for path in ("/run/devenv/jupyter-token", "/etc/devenv/jupyter/secret", "/run/devenv/jupyter-runtime/x"):
        peek = team.ssh("alice", f"cat {path}")
        assert peek.returncode != 0 and "Permission denied" in peek.stderr, (path, peek)
    # root is the owner's (or an admin's)
    root = team.exec("alice", "id -u", root=True)
    assert root.returncode != 0 and "0" not in root.stdout.split(), root


def test_revocation_leaves_nothing_and_touches_nobody_else(team: Team, client: docker.DockerClient) -> None:
    team.owner.cli("access", "grant", WS, "alice", "--ssh", "--jupyter", check=True)
    team.owner.cli("access", "grant", WS, "bob", "--ssh", check=True)
    until_ssh_works(team, "alice")
    login = json.loads((team.people["alice"].home / "ssh" / f"{WS}.devenv.json").read_text())["user"]
    alice_gids = gids(client, login)
    assert len(alice_gids) == 2

    # alice: over SSH, exec and JupyterLab, detached every way, and live connections of each kind
    assert team.ssh("alice", DETACHED.format(410)).stdout.strip() == "started"
    assert team.exec("alice", DETACHED.format(420)).stdout.strip() == "started"
    ssh_session = team.session("alice", "sleep 4104")
    exec_stream = team.people["alice"].popen("exec", WS, "--", "sleep", "4204")
    lab = team.lab("alice")
    kernel_id, kernel_socket = lab.kernel()
    kernel_pid = int(run_in_kernel(kernel_socket, KERNEL_DETACHED.format(430)).strip())
    _terminal, terminal_socket = lab.terminal("nohup sleep 4402 >/dev/null 2>&1 &")
    # the owner's and bob's, which must go on
    owner_session = team.session("owner", "sleep 4901")
    team.exec("owner", "nohup sleep 4902 >/dev/null 2>&1 &")
    owner_lab = team.lab("owner")
    _owner_kernel, owner_socket = owner_lab.kernel()
    run_in_kernel(owner_socket, KERNEL_DETACHED.format(493))
    until_ssh_works(team, "bob")
    team.exec("bob", "nohup sleep 4801 >/dev/null 2>&1 &")
    alice_marks = ("4101", "4102", "4103", "4104", "4201", "4202", "4203", "4204", "4301", "4402")
    others = ("4901", "4902", "4931", "4801")
    until("every process to start", lambda: running(client, *alice_marks, *others) == {*alice_marks, *others})
    assert any(pid == kernel_pid and groups & alice_gids for pid, groups, _args in processes(client))

    closed: dict[str, float] = {}

    def watch(name: str, wait: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            with contextlib.suppress(Exception):  # closed is what is waited for, however it shows
                wait()
            closed[name] = time.monotonic() - started

        thread = threading.Thread(target=run, daemon=True)
        return thread

    def drained(socket: object) -> Callable[[], None]:
        def read() -> None:
            while True:
                socket.recv(timeout=60)  # type: ignore[attr-defined]

        return read

    watchers = [
        watch("ssh session", lambda: ssh_session.wait(60)),
        watch("exec stream", lambda: exec_stream.wait(60)),
        watch("kernel websocket", drained(kernel_socket)),
        watch("terminal websocket", drained(terminal_socket)),
    ]
    started = time.monotonic()
    for thread in watchers:
        thread.start()
    team.owner.client.revoke(WS, "alice")
    answered = time.monotonic() - started
    # the sweep runs inside the revoke: when it answers, nothing of hers is left to find
    at_answer = processes(client)
    assert not running(client, *alice_marks, seen=at_answer), at_answer
    assert not any(groups & alice_gids for _pid, groups, _args in at_answer), at_answer
    deadline = started + BOUND
    closed["every process she started (ssh, exec, jupyter; detached or not)"] = answered
    for thread in watchers:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.1)
    print(f"\nrevoke answered after {answered:.2f} s; closed after:")
    for name, seconds in sorted(closed.items(), key=lambda item: item[1]):
        print(f"  {name}: {seconds:.2f} s")
    expected = {"ssh session", "exec stream", "kernel websocket", "terminal websocket"}
    assert expected <= set(closed), f"still open after {BOUND} s: {expected - set(closed)}"
    assert not any(pid == kernel_pid for pid, _g, _a in processes(client))
    assert not any(kernel_id in args for _p, _g, args in processes(client))

    # and nothing lets her back: sshd, the daemon, the proxy
    refused = team.plain_ssh("alice")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    denied = team.exec("alice", "true")
    assert denied.returncode != 0 and "alice has no" in denied.stderr, denied.stderr
    assert lab.get("api/kernels").status_code == 403
    assert team.people["alice"].cli("jupyter", WS, "--no-browser").returncode != 0

    # the owner's and bob's go on, through the second sweep (a second after the revoke) too
    assert run_in_kernel(owner_socket, "print(1 + 1)") == "2\n"
    while time.monotonic() - started < SECOND_SWEEP + 1.0:
        assert running(client, *others) == set(others)
        assert owner_session.poll() is None, "the owner's SSH session was closed by alice's revoke"
        time.sleep(0.2)
    assert team.plain_ssh("bob").returncode == 0
    owner_session.kill()
    owner_session.wait(10)


def test_share_secrets_places_the_owners_own_from_the_next_start(team: Team, client: docker.DockerClient) -> None:
    team.owner.cli("access", "revoke", WS, "bob", check=True)
    team.owner.cli("access", "grant", WS, "bob", "--ssh", "--share-secrets", check=True)
    team.owner.cli("stop", WS, check=True)
    team.owner.cli("start", WS, check=True)
    until_ssh_works(team, "bob")
    assert team.ssh("bob", "cat /run/devenv/secrets/OWNER_SECRET").stdout == team.values["OWNER_SECRET"]
