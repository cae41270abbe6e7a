"""One verified SSH connection to a host, made on first use and again after the host comes back.

The host key is checked against the pins (known_hosts) before any credential is sent: an unknown
key raises HostKeyUnknown with its fingerprint (unless the caller passes that very fingerprint as
`trust`, which pins it), a different key raises HostKeyChanged. Never a silent accept.
Authentication is by key only; the key is given as text (the daemon keeps it encrypted).
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from devenv.backends.ssh.known_hosts import KnownHosts, fingerprint
from devenv.backends.ssh.target import SshTarget
from devenv.errors import BackendError, EngineUnreachable, HostKeyChanged, HostKeyUnknown, UsageError

logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # its tracebacks on a dropped host are ours to word

CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 8  # each carries up to sshd's MaxSessions (10 by default) exec channels
KEEPALIVE = 15  # seconds: a quiet connection through a NAT stays open, a dead one is noticed
_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def load_private_key(text: str, *, source: str = "the identity") -> paramiko.PKey:
    """A private key from its text (OpenSSH or PEM); UsageError when it is not one devenv can use."""
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise UsageError(
                f"{source} is protected by a passphrase; the daemon logs in unattended",
                hint="use a key without a passphrase made for devenv (ssh-keygen -t ed25519 -N '')",
            ) from None
        except (paramiko.SSHException, ValueError, IndexError):
            continue
    raise UsageError(
        f"{source} is not a private key devenv can read (ed25519, ECDSA or RSA)",
        hint="pass the private key file, not the .pub",
    )


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


class SshSession:
    """The SSH connection to one host, shared by engine calls, tunnels and host commands."""

    def __init__(self, target: SshTarget, key: paramiko.PKey, known_hosts: KnownHosts) -> None:
        self.target = target
        self.key = key
        self.known_hosts = known_hosts
        self._transport: paramiko.Transport | None = None
        self._extra: list[paramiko.Transport] = []  # more connections when sshd's MaxSessions is reached
        self._lock = threading.Lock()
        self.generation = 0  # counts reconnects: pools of channels on an older connection are stale

    @property
    def url(self) -> str:
        return self.target.url

    def transport(self, *, trust: str | None = None) -> paramiko.Transport:
        """The live connection, connecting (and verifying the host) when there is none."""
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            if self._transport is not None:
                self._transport.close()
            self._transport = self._connect(trust)
            self.generation += 1
            return self._transport

    def get_transport(self) -> SshSession:
        """The Docker SDK's connection pool asks its paramiko client for a transport to `open_session()` on:
        the session is that, picking a connection with room for another channel."""
        return self

    def open_session(self, timeout: float | None = CONNECT_TIMEOUT) -> paramiko.Channel:
        """An exec channel on a connection with room for one: sshd allows MaxSessions (10) per connection,
        and every pooled engine connection holds one, so a busy host gets a few SSH connections."""
        primary = self.transport()
        with self._lock:
            self._extra = [t for t in self._extra if t.is_active()]
            candidates = [primary, *self._extra]
        for transport in candidates:
            try:
                return transport.open_session(timeout=timeout)
            except paramiko.ChannelException:
                continue  # this connection is full
        with self._lock:
            if len(self._extra) + 1 >= MAX_CONNECTIONS:
                raise EngineUnreachable(
                    f"{self.target.url} refuses more sessions on {MAX_CONNECTIONS} connections",
                    hint="raise MaxSessions in the host's sshd_config",
                )
            extra = self._connect(None)
            self._extra.append(extra)
        return extra.open_session(timeout=timeout)

    def close(self) -> None:
        with self._lock:
            for transport in [self._transport, *self._extra]:
                if transport is not None:
                    transport.close()
            self._transport = None
            self._extra = []

    def _connect(self, trust: str | None) -> paramiko.Transport:
        target = self.target
        try:
            sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise EngineUnreachable(
                f"the SSH host {target.url} does not answer ({exc.strerror or exc})",
                hint="check that the machine is up and its sshd reachable from the daemon",
            ) from exc
        transport = paramiko.Transport(sock)
        try:
            # a pin written "ssh-rsa" (OpenSSH, ours) is asked for by its signature algorithms' names
            preferred = [
                name
                for kind in self.known_hosts.pinned_types(target)
                for name in (("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if kind == "ssh-rsa" else (kind,))
            ]
            if preferred:
                options = transport.get_security_options()
                options.key_types = [
                    *[k for k in preferred if k in options.key_types],
                    *[k for k in options.key_types if k not in preferred],
                ]
            transport.start_client(timeout=CONNECT_TIMEOUT)
            self._verify(transport.get_remote_server_key(), trust)
            transport.auth_publickey(target.user, self.key)
        except (HostKeyUnknown, HostKeyChanged):
            transport.close()
            raise
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise BackendError(
                f"{target.url} refused devenv's key for {target.user} ({exc})",
                hint=f"add the key's .pub to ~{target.user}/.ssh/authorized_keys on the host",
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise EngineUnreachable(
                f"the SSH host {target.url} dropped the connection ({exc})",
                hint="check that sshd runs there and lets the daemon's address in",
            ) from exc
        transport.set_keepalive(KEEPALIVE)
        return transport

    def _verify(self, key: paramiko.PKey, trust: str | None) -> None:
        target, seen = self.target, fingerprint(key)
        check = self.known_hosts.check(target, key)
        if check.verdict == "known":
            return
        if check.verdict == "changed":
            pinned = fingerprint(check.pinned) if check.pinned is not None else "?"
            raise HostKeyChanged(
                f"the host key of {target.url} CHANGED: it is {key.get_name()} {seen}, but {check.where} pins "
                f"{pinned}; someone may be in between, or the host was reinstalled",
                hint=f"if the host was reinstalled, confirm the new key with its owner, then remove the line for "
                f"{target.known_hosts_name} from {check.where} and add the host again",
                data={"fingerprint": seen, "pinned": pinned, "key_type": key.get_name()},
            )
        if trust is not None and trust.strip() == seen:
            self.known_hosts.add(target, key)
            return
        if trust is not None:
            raise HostKeyChanged(
                f"{target.url} answered with {key.get_name()} {seen}, not the {trust} you trusted",
                hint="check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_"
                "ed25519_key.pub`) and try again",
                data={"fingerprint": seen, "key_type": key.get_name()},
            )
        raise HostKeyUnknown(
            f"the authenticity of {target.url} can't be established: its {key.get_name()} key fingerprint is {seen}",
            hint=f"check it on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then confirm it with "
            f"--trust {seen}",
            data={"fingerprint": seen, "key_type": key.get_name(), "host": target.known_hosts_name},
        )

    def run(self, command: str, *, timeout: float = 30.0, stdin: Iterable[bytes] | None = None) -> CommandResult:
        """Run a shell command on the host (not in a workspace) and collect its output; `stdin`, when given,
        is streamed to the command (an archive, an image) and then closed."""
        try:
            channel = self.open_session()
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                for chunk in stdin:
                    channel.sendall(chunk)
                channel.shutdown_write()
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            code = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise EngineUnreachable(f"running a command on {self.target.url} failed ({exc or 'timed out'})") from exc
        return CommandResult(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def open_channel(self, address: str, port: int) -> paramiko.Channel:
        """A TCP connection from the host to address:port (the host's view: a container on its bridge)."""
        started = time.monotonic()
        try:
            return self.transport().open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            waited = time.monotonic() - started
            raise EngineUnreachable(
                f"{self.target.url} could not reach {address}:{port} for devenv "
                f"({exc or 'refused'}, after {waited:.1f}s)",
                hint="the host's sshd must allow TCP forwarding (AllowTcpForwarding yes)",
            ) from exc


def session_from_config(url: str, identity: str | None) -> SshSession:
    """An SSH engine named in daemon.yaml (`url: ssh://...`, `identity: FILE`), pinned in devenv's known_hosts."""
    from devenv import paths
    from devenv.backends.ssh.target import parse_target

    key_file = Path(identity).expanduser() if identity else Path.home() / ".ssh" / "id_ed25519"
    try:
        text = key_file.read_text()
    except OSError as exc:
        raise UsageError(
            f"{url}: cannot read the identity {key_file} ({exc.strerror})",
            hint="set `identity:` to a private key file in daemon.yaml",
        ) from exc
    return SshSession(
        parse_target(url), load_private_key(text, source=str(key_file)), KnownHosts(paths.home_dir() / "known_hosts")
    )
