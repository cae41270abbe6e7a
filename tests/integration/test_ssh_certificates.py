"""Real `ssh` against a real sshd (in a workspace image) that trusts devenv's CA: what gets in, what does not.

The sshd here is configured the way workspaces will be (TrustedUserCAKeys, principals, a KRL, no
authorized_keys, no passwords); the files reach the container the way the daemon will deliver them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from devenv.access.ssh_ca import SshCertificateAuthority
from devenv.backends.base import Handle
from devenv.backends.docker import DockerBackend
from devenv.testing.projects import WorkspaceImage

SSHD_CONFIG = """\
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
UsePAM no
AllowUsers dev
AuthorizedKeysFile none
TrustedUserCAKeys /etc/devenv/ssh/ca.pub
AuthorizedPrincipalsFile /etc/devenv/ssh/principals
RevokedKeys /etc/devenv/ssh/revoked.krl
"""
PRINCIPAL = "ws:it-ssh"


@dataclass
class Sshd:
    container: Container
    port: int
    ca: SshCertificateAuthority
    folder: Path

    def put(self, name: str, data: bytes) -> None:
        """Replace /etc/devenv/ssh/NAME atomically, with the backend call the daemon uses."""
        place(self.container, {name: data})

    def key(self, name: str) -> Path:
        path = self.folder / name
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        return path

    def certify(
        self, name: str, *, principals: tuple[str, ...] = (PRINCIPAL,), serial: int = 1, now: dt.datetime | None = None
    ) -> Path:
        key = self.key(name)
        cert = self.ca.sign(
            key.with_suffix(".pub").read_text(), key_id=name, principals=principals, serial=serial, now=now
        )
        (self.folder / f"{name}-cert.pub").write_text(cert.text + "\n")
        return key

    def ssh(self, key: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
        options = [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        if key is not None:
            options += ["-i", str(key)]
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        return subprocess.run(
            ["ssh", *options, *extra, "-p", str(self.port), "dev@127.0.0.1", "echo", "in"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )


def place(container: Container, files: dict[str, bytes]) -> None:
    """Files into /etc/devenv/ssh/ through DockerBackend.put_files: before start, or atomically while running."""
    handle = Handle(container=container.name, volume="")
    DockerBackend("test").put_files(handle, {f"/etc/devenv/ssh/{name}": data for name, data in files.items()})


def _banner(port: int) -> bytes:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        return conn.recv(64)
    return b""


@pytest.fixture(scope="module")
def sshd(
    client: docker.DockerClient, light_image: WorkspaceImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sshd]:
    folder = tmp_path_factory.mktemp("ssh")
    ca = SshCertificateAuthority(folder / "ca").ensure()
    command = (
        "usermod --password '*' dev && ssh-keygen -A >/dev/null && mkdir -p /run/sshd && "
        "exec /usr/sbin/sshd -D -e -f /etc/devenv/ssh/sshd_config"
    )
    container = client.containers.create(
        light_image.tag, ["sh", "-c", command], ports={"22/tcp": ("127.0.0.1", None)}, labels={"devenv.test": "ssh"}
    )
    try:
        place(
            container,
            {
                "sshd_config": SSHD_CONFIG.encode(),
                "ca.pub": (ca.public_key + "\n").encode(),
                "principals": f"{PRINCIPAL}\n".encode(),
                "revoked.krl": ca.revocation_list(),
            },
        )
        container.start()
        container.reload()
        port = int(container.ports["22/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 60
        while not _banner(port).startswith(b"SSH-2.0-"):
            assert time.monotonic() < deadline, container.logs().decode(errors="replace")
            time.sleep(0.3)
        yield Sshd(container, port, ca, folder)
    finally:
        container.remove(force=True)


def test_a_certificate_for_this_workspace_gets_in(sshd: Sshd) -> None:
    result = sshd.ssh(sshd.certify("alice", serial=1))
    assert result.returncode == 0 and result.stdout == "in\n", result.stderr


def test_a_bare_key_is_refused(sshd: Sshd) -> None:
    key = sshd.key("bare")
    sshd.container.exec_run(
        [
            "sh",
            "-c",
            f"mkdir -p ~dev/.ssh && cat >> ~dev/.ssh/authorized_keys <<'EOF'\n{key.with_suffix('.pub').read_text()}EOF",
        ]
    )
    result = sshd.ssh(key)  # even listed in authorized_keys: AuthorizedKeysFile is none
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_a_certificate_for_another_principal_is_refused(sshd: Sshd) -> None:
    result = sshd.ssh(sshd.certify("mallory", principals=("ws:other",), serial=2))
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_an_expired_certificate_is_refused(sshd: Sshd) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    result = sshd.ssh(sshd.certify("late", serial=3, now=past))
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_a_password_is_refused(sshd: Sshd) -> None:
    result = sshd.ssh(
        None, "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no"
    )
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_a_revoked_certificate_is_refused_at_the_next_login_others_are_not(sshd: Sshd) -> None:
    bob = sshd.certify("bob", serial=20)
    carol = sshd.certify("carol", serial=21)
    assert sshd.ssh(bob).returncode == 0 and sshd.ssh(carol).returncode == 0
    started = time.monotonic()
    sshd.put("revoked.krl", sshd.ca.revocation_list(serials=[20]))
    refused = sshd.ssh(bob)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert time.monotonic() - started < 5
    assert sshd.ssh(carol).returncode == 0
    sshd.put("revoked.krl", sshd.ca.revocation_list())  # take it back: bob gets in again
    assert sshd.ssh(bob).returncode == 0


def test_without_a_readable_krl_nobody_gets_in(sshd: Sshd) -> None:
    key = sshd.certify("dora", serial=30)
    sshd.container.exec_run(["mv", "/etc/devenv/ssh/revoked.krl", "/etc/devenv/ssh/revoked.krl.away"])
    try:
        assert sshd.ssh(key).returncode == 255  # fail closed
    finally:
        sshd.container.exec_run(["mv", "/etc/devenv/ssh/revoked.krl.away", "/etc/devenv/ssh/revoked.krl"])
    assert sshd.ssh(key).returncode == 0
