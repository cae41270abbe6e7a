"""Access that can be revoked, with real parts: devenvd on TCP with tokens, real ssh into a real
workspace sshd, plain `ssh WS.devenv` through ssh-config, and JupyterLab in a real headless Chromium.

The workspace's owner is the daemon's local user (the unix socket); alice, bob and carol are token
holders with their own devenv homes, as teammates on a team server would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from devenv.backends.base import container_name
from devenv.testing.network import free_port
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.jupyter import BROWSER_CELL, BROWSER_RUN

WS = "it-access"
CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright drives it, no browser download
NO_AGENT = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}


@dataclass
class Team:
    owner: Devenvd
    url: str
    people: dict[str, Devenvd]
    keys: dict[str, Path]

    def as_(self, person: str) -> Devenvd:
        return self.people[person]

    def ssh(self, person: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.people[person].cli(
            "ssh", "-i", str(self.keys[person]), WS, "-o", "BatchMode=yes", "--", *command, timeout=timeout
        )

    def session(self, person: str, seconds: int = 300) -> subprocess.Popen[str]:
        """A live SSH session of `person` (a remote sleep), as a real ssh process."""
        return self.people[person].popen(
            "ssh", "-i", str(self.keys[person]), WS, "-o", "BatchMode=yes", "--", "sleep", str(seconds)
        )

    def ssh_port(self) -> int:
        return int(self.owner.workspaces()[WS]["ssh_port"])


def until_ssh_works(team: Team, person: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (result := team.ssh(person, "true")).returncode != 0:
        assert time.monotonic() < deadline, result.stderr
        time.sleep(0.5)


def plain_ssh(team: Team, person: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`person`'s key and cached certificate straight at sshd: what sshd itself decides, no daemon asked.
    As the login the daemon named for them (`dev` for the owner, a login of their own for a grantee)."""
    folder = team.people[person].home / "ssh"
    cert = folder / f"{WS}.devenv-cert.pub"
    user = user or json.loads((folder / f"{WS}.devenv.json").read_text())["user"]
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(team.keys[person]),
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
            str(team.ssh_port()),
            f"{user}@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=NO_AGENT,
    )


def sessions_of(client: docker.DockerClient) -> str:
    """The workspace's live `sleep` sessions, as `ps` sees them inside."""
    container = client.containers.get(container_name(WS))
    return container.exec_run(["ps", "-eo", "args"]).output.decode()


@pytest.fixture(scope="module")
def team(workspace_image: WorkspaceImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    port = free_port()
    owner = Devenvd(env={"DEVENV_ACCESS_INTERVAL": "0.5", "DEVENV_RECONCILE_INTERVAL": "2"})
    owner.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    people: dict[str, Devenvd] = {}
    keys: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("team")
    try:
        for person in ("alice", "bob", "carol"):
            made = subprocess.run(
                [*_devenvd(), "token", "create", person],
                env=owner.env,
                text=True,
                capture_output=True,
                timeout=60,
                check=True,
            )
            people[person] = Devenvd(env={"DEVENV_HOST": url, "DEVENV_TOKEN": made.stdout.strip()})
        people["owner"] = owner
        for person in people:
            keys[person] = folder / f"{person}_ed25519"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", person, "-f", str(keys[person])], check=True
            )
        project = copy_project(workspace_image, folder / "project", WS)
        owner.cli("up", cwd=project, check=True)
        yield Team(owner, url, people, keys)
    finally:
        owner.cleanup()
        for person, daemon in people.items():
            if person != "owner":
                daemon.stop()


def whoami() -> str:
    import getpass

    return getpass.getuser()


def _devenvd() -> list[str]:
    import sys

    return [sys.executable, "-m", "devenv.daemon.process.main"]


def test_nobody_but_the_owner_gets_in_until_granted(team: Team) -> None:
    until_ssh_works(team, "owner")
    refused = team.ssh("alice", "true")
    assert refused.returncode != 0 and "alice has no" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    self_grant = team.as_("alice").cli("access", "grant", WS, "alice", "--ssh")
    assert self_grant.returncode != 0 and "forbidden" in self_grant.stderr, self_grant.stderr
    denied_exec = team.as_("alice").cli("exec", WS, "--", "true")
    assert denied_exec.returncode != 0 and "alice has no" in denied_exec.stderr, denied_exec.stderr

    team.owner.cli("access", "grant", WS, "alice", "--ssh", check=True)
    assert team.ssh("alice", "whoami").stdout == "dev\n"  # dev's uid and home, under a login of her own
    assert plain_ssh(team, "alice").returncode == 0
    as_dev = plain_ssh(team, "alice", user="dev")  # only the owner's certificate logs in as dev
    assert as_dev.returncode == 255 and "Permission denied" in as_dev.stderr, as_dev.stderr
    listing = team.owner.cli("access", "ls", WS, check=True).stdout
    assert "alice" in listing and "(owner)" in listing


def test_revoke_closes_that_persons_sessions_only_and_sshd_refuses_their_certificate(
    team: Team, client: docker.DockerClient
) -> None:
    team.owner.cli("access", "grant", WS, "alice", "--ssh", check=True)
    team.owner.cli("access", "grant", WS, "bob", "--ssh", check=True)
    until_ssh_works(team, "alice")
    until_ssh_works(team, "bob")
    alice, bob = team.session("alice", 301), team.session("bob", 302)
    try:
        deadline = time.monotonic() + 30
        while not ("sleep 301" in (seen := sessions_of(client)) and "sleep 302" in seen):
            assert time.monotonic() < deadline and alice.poll() is None and bob.poll() is None, seen
            time.sleep(0.2)
        started = time.monotonic()
        team.owner.cli("access", "revoke", WS, "alice", check=True)
        alice.wait(timeout=5)  # closed by the daemon within 5 s
        closed_after = time.monotonic() - started
        refused = plain_ssh(team, "alice")  # her certificate is still in date: sshd itself must refuse it
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
        print(f"\nrevoke -> alice's SSH session closed in {closed_after:.2f} s")
        time.sleep(1.5)  # the second sweep has run too
        assert bob.poll() is None, "bob's session was closed by alice's revoke"
        assert "sleep 302" in sessions_of(client) and "sleep 301" not in sessions_of(client)
        assert plain_ssh(team, "bob").returncode == 0
        again = team.ssh("alice", "true")  # `devenv ssh` with her cached certificate: the daemon or sshd refuses
        assert again.returncode != 0 and ("Permission denied" in again.stderr or "alice has no" in again.stderr)
        ended = team.owner.cli("access", "ls", WS, "--all", check=True).stdout
        assert any(line.startswith("alice") and f"by {whoami()}" in line for line in ended.splitlines()), ended
    finally:
        for process in (alice, bob):
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_a_grant_with_a_ttl_ends_by_itself(team: Team) -> None:
    team.owner.cli("access", "grant", WS, "carol", "--ssh", "--ttl", "6s", check=True)
    until_ssh_works(team, "carol", timeout=5)
    session = team.session("carol", 303)
    try:
        session.wait(timeout=20)  # the grant ends after 6 s, the access loop looks every 0.5 s
    finally:
        if session.poll() is None:
            session.kill()
    assert plain_ssh(team, "carol").returncode == 255
    listing = team.owner.cli("access", "ls", WS, "--all", check=True).stdout
    assert "expired" in listing


def test_plain_ssh_and_scp_through_ssh_config(team: Team, tmp_path: Path) -> None:
    until_ssh_works(team, "owner")  # sshd is up (when this test runs alone, right after `up`)
    config = tmp_path / "config"
    config.write_text("Host elsewhere\n    User someone\n")
    owner = team.owner
    first = owner.cli("ssh-config", "-i", str(team.keys["owner"]), "--config", str(config), check=True)
    assert "Include" in first.stdout
    written = config.read_text()
    assert written.endswith("Host elsewhere\n    User someone\n") and written.startswith("Include ")
    owner.cli("ssh-config", "-i", str(team.keys["owner"]), "--config", str(config), check=True)
    assert config.read_text() == written  # idempotent: nothing added twice, nothing else touched

    env = {**NO_AGENT, **owner.env}
    for stale in (owner.home / "ssh").glob(f"{WS}.devenv*"):
        stale.unlink()  # no certificate yet: the Match exec hook must fetch one without a prompt
    result = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", f"{WS}.devenv", "echo", "plain"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0 and result.stdout == "plain\n", result.stderr
    payload = tmp_path / "payload.txt"
    payload.write_text("copied by scp\n")
    copied = subprocess.run(
        ["scp", "-F", str(config), "-o", "BatchMode=yes", str(payload), f"{WS}.devenv:/tmp/payload.txt"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert copied.returncode == 0, copied.stderr
    assert owner.cli("exec", WS, "--", "cat", "/tmp/payload.txt", check=True).stdout == "copied by scp\n"
    # a host certificate for another name is not accepted (StrictHostKeyChecking yes, no prompt)
    wrong = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "HostKeyAlias=other.devenv", f"{WS}.devenv", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert wrong.returncode == 255 and "Host key verification failed" in wrong.stderr


def test_the_jupyter_port_is_not_published_and_sshd_only_on_loopback(client: docker.DockerClient, team: Team) -> None:
    container = client.containers.get(container_name(WS))
    bindings = container.attrs["HostConfig"]["PortBindings"] or {}
    assert "8888/tcp" not in bindings
    assert [binding["HostIp"] for binding in bindings["22/tcp"]] == ["127.0.0.1"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def jupyter_link(team: Team, person: str) -> str:
    answer = team.people[person].cli("jupyter", WS, "--no-browser", check=True)
    return answer.stdout.strip().splitlines()[0]


def open_lab(browser: Any, link: str) -> Any:
    """A fresh browser profile that follows the login link, with a kernel channel open and a cell run."""
    page = browser.new_context().new_page()
    response = page.goto(link)
    assert response is not None and response.status == 200, response and response.status
    assert page.url.endswith(f"/jupyter/{WS}/lab") and "ticket" not in page.url  # landed on the clean URL
    page.evaluate(BROWSER_RUN)
    return page


def container_log(client: docker.DockerClient) -> str:
    return client.containers.get(container_name(WS)).logs(tail=30).decode(errors="replace")


def test_jupyterlab_in_a_real_browser_until_revoked(team: Team, browser: Any, client: docker.DockerClient) -> None:
    team.owner.cli("access", "grant", WS, "bob", "--jupyter", check=True)
    started = time.monotonic()
    link = jupyter_link(team, "bob")
    bob = open_lab(browser, link)
    assert bob.evaluate(BROWSER_CELL, {"base": f"/jupyter/{WS}/", "code": "print(6 * 7)"}) == "42\n"
    print(f"\n`devenv jupyter` -> first cell's output in the browser: {time.monotonic() - started:.2f} s")
    cookies = {cookie["name"]: cookie for cookie in bob.context.cookies()}
    assert cookies["devenv_jupyter"]["httpOnly"] and cookies["devenv_jupyter"]["sameSite"] == "Lax"

    # the link was single use; JupyterLab's own XSRF check still guards changes
    again = browser.new_context().new_page().goto(link)
    assert again is not None and again.status == 401
    no_xsrf = bob.evaluate(f"fetch('/jupyter/{WS}/api/kernels', {{method: 'POST', body: '{{}}'}}).then(r => r.status)")
    assert no_xsrf == 403

    owner = open_lab(browser, jupyter_link(team, "owner"))
    ran = owner.evaluate(BROWSER_CELL, {"base": f"/jupyter/{WS}/", "code": "print('owner')"})
    assert ran == "owner\n", container_log(client)  # (once failed: the proxy passed bob's _xsrf cookie on)

    revoked_at = time.monotonic()
    team.owner.cli("access", "revoke", WS, "bob", check=True)
    bob.wait_for_function("window.__devenvClosed !== null", timeout=5000)  # kernel channel closed within 5 s
    print(f"revoke -> bob's kernel websocket closed in {time.monotonic() - revoked_at:.2f} s")
    reload = bob.reload()
    assert reload is not None and reload.status == 403
    # the owner's kernel connection is untouched and still runs cells
    assert owner.evaluate("window.__devenvClosed") is None
    assert owner.evaluate("window.__devenvRun('print(1 + 1)')") == "2\n"
