"""The parts of SSH hosts that need no remote machine: targets, pinned host keys, key loading, host facts, tunnels.

Keys come from the real `ssh-keygen`, and OpenSSH's own tools read what devenv writes, so "as OpenSSH does"
is checked against OpenSSH rather than against devenv's idea of it. The host-key checks run against an
in-process paramiko SSH server on 127.0.0.1, never the network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paramiko
import pytest

from devenv.backends.host_facts import parse_df, parse_gpus
from devenv.backends.ssh.known_hosts import KnownHosts, fingerprint
from devenv.backends.ssh.session import SshSession, load_private_key
from devenv.backends.ssh.target import SshTarget, parse_target
from devenv.backends.ssh.tunnels import Tunnels
from devenv.errors import (
    EngineUnreachable,
    HostKeyChanged,
    HostKeyUnknown,
    UsageError,
    error_from_payload,
    error_payload,
)

# --- keys made by the real ssh-keygen ------------------------------------------------------------


@dataclass(frozen=True)
class KeyFile:
    path: Path
    text: str  # the private key file's text
    public: str  # the .pub line

    @property
    def key(self) -> paramiko.PKey:
        return load_private_key(self.text)


def keygen(folder: Path, name: str, kind: str = "ed25519", *, passphrase: str = "", pem: bool = False) -> KeyFile:
    path = folder / name
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", f"{name}@test", "-f", str(path)]
    if kind == "rsa":
        argv[4:4] = ["-b", "2048"]
    if pem:
        argv += ["-m", "PEM"]
    subprocess.run(argv, check=True, capture_output=True)
    return KeyFile(path, path.read_text(), path.with_suffix(".pub").read_text())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyFile]:
    folder = tmp_path_factory.mktemp("keys")
    return {
        "ed25519": keygen(folder, "ed25519"),
        "ed25519-b": keygen(folder, "ed25519-b"),
        "ecdsa": keygen(folder, "ecdsa", "ecdsa"),
        "ecdsa-pem": keygen(folder, "ecdsa-pem", "ecdsa", pem=True),
        "rsa": keygen(folder, "rsa", "rsa"),
        "rsa-pem": keygen(folder, "rsa-pem", "rsa", pem=True),
        "locked": keygen(folder, "locked", passphrase="correct horse"),
        "locked-rsa-pem": keygen(folder, "locked-rsa-pem", "rsa", passphrase="correct horse", pem=True),
    }


def ssh_keygen_fingerprint(path: Path) -> str:
    shown = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    return shown.split()[1]  # "256 SHA256:... comment (ED25519)"


# --- parse_target --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target", "canonical", "known_name"),
    [
        ("ssh://ubuntu@gpu-box", SshTarget("ubuntu", "gpu-box", 22), "ssh://ubuntu@gpu-box", "gpu-box"),
        ("ssh://me@10.0.0.5:2222", SshTarget("me", "10.0.0.5", 2222), "ssh://me@10.0.0.5:2222", "[10.0.0.5]:2222"),
        ("ssh://me@gpu-box:22", SshTarget("me", "gpu-box", 22), "ssh://me@gpu-box", "gpu-box"),
        ("ssh://u@[::1]:22", SshTarget("u", "::1", 22), "ssh://u@[::1]", "::1"),
        ("ssh://u@[::1]:2222", SshTarget("u", "::1", 2222), "ssh://u@[::1]:2222", "[::1]:2222"),
        ("  ssh://ops_1.x@box/ \n", SshTarget("ops_1.x", "box", 22), "ssh://ops_1.x@box", "box"),
    ],
)
def test_a_target_parses_and_names_itself_as_openssh_does(
    url: str, target: SshTarget, canonical: str, known_name: str
) -> None:
    parsed = parse_target(url)
    assert parsed == target
    assert parsed.url == canonical
    assert parsed.known_hosts_name == known_name
    assert parse_target(parsed.url) == parsed  # the canonical form parses back to itself


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://ubuntu@gpu-box", "not an ssh:// URL"),
        ("ubuntu@gpu-box", "not an ssh:// URL"),
        ("ssh://gpu-box", "no valid user"),
        ("ssh://-oProxyCommand=sh@gpu-box", "no valid user"),  # never an option in disguise
        ("ssh://u@", "no host"),
        ("ssh://u@gpu-box/home/u", "no path"),
        ("ssh://u@gpu-box?x=1", "no path"),
        ("ssh://u@gpu-box:99999", "port"),
        ("ssh://u@gpu-box:twenty-two", "port"),
    ],
)
def test_anything_else_is_a_usage_error_that_says_what_to_type(url: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_target(url)
    assert caught.value.exit_code == 2
    assert words in caught.value.message
    assert "ssh://USER@HOST" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "url",
    [
        "ssh://ubuntu:hunter2-pw@gpu-box",
        "ssh://ubuntu:hunter2-pw@gpu-box:bad",
        "ssh://ubuntu:hunter2-pw@gpu-box/path",
        "ssh://:hunter2-pw@gpu-box",
    ],
)
def test_a_password_in_the_url_is_refused_without_being_echoed(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_target(url)
    assert caught.value.exit_code == 2 and "password" in caught.value.message
    assert "hunter2-pw" not in caught.value.render()


def test_a_password_in_a_url_of_another_scheme_is_not_echoed_either() -> None:
    with pytest.raises(UsageError) as caught:
        parse_target("https://ubuntu:hunter2-pw@gpu-box")
    assert "hunter2-pw" not in caught.value.render()


def test_port_zero_is_refused() -> None:
    with pytest.raises(UsageError):
        parse_target("ssh://u@gpu-box:0")


# --- fingerprints and keys -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ed25519", "ecdsa", "ecdsa-pem", "rsa", "rsa-pem"])
def test_a_private_key_from_ssh_keygen_loads_and_its_fingerprint_is_ssh_keygens(
    keys: dict[str, KeyFile], name: str
) -> None:
    made = keys[name]
    key = load_private_key(made.text)
    assert key.can_sign()
    assert f"{key.get_name()} {key.get_base64()}" == " ".join(made.public.split()[:2])  # the .pub's key
    assert fingerprint(key) == ssh_keygen_fingerprint(made.path.with_suffix(".pub"))


def test_fingerprints_of_two_keys_differ(keys: dict[str, KeyFile]) -> None:
    assert fingerprint(keys["ed25519"].key) != fingerprint(keys["ed25519-b"].key)
    assert fingerprint(keys["ed25519"].key).startswith("SHA256:") and "=" not in fingerprint(keys["ed25519"].key)


@pytest.mark.parametrize("name", ["locked", "locked-rsa-pem"])
def test_a_passphrase_protected_key_is_refused_saying_so(keys: dict[str, KeyFile], name: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_private_key(keys[name].text, source="~/.ssh/devenv")
    assert caught.value.exit_code == 2
    assert "passphrase" in caught.value.message and "~/.ssh/devenv" in caught.value.message
    assert "correct horse" not in caught.value.render()


@pytest.mark.parametrize(
    "text",
    ["pub", "", "not a key at all\n", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"],
)
def test_a_public_key_or_other_text_is_refused(keys: dict[str, KeyFile], text: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_private_key(keys["ed25519"].public if text == "pub" else text)
    assert caught.value.exit_code == 2
    assert "not a private key" in caught.value.message and ".pub" in (caught.value.hint or "")


# --- known_hosts ---------------------------------------------------------------------------------

BOX = SshTarget("op", "gpu-box")
BOX_2222 = SshTarget("op", "gpu-box", 2222)
OTHER = SshTarget("op", "other-box")


def keygen_finds(known_hosts: Path, name: str) -> bool:
    found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(known_hosts)], capture_output=True, text=True)
    return found.returncode == 0 and "found" in found.stdout


def test_a_host_is_unknown_then_known_then_changed(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    pins = KnownHosts(tmp_path / "devenv" / "known_hosts", system=tmp_path / "absent")
    key, other = keys["ed25519"].key, keys["ed25519-b"].key
    assert pins.check(BOX, key).verdict == "unknown"
    pins.add(BOX, key)
    known = pins.check(BOX, key)
    assert (known.verdict, known.where) == ("known", pins.path)
    changed = pins.check(BOX, other)
    assert (changed.verdict, changed.where) == ("changed", pins.path)
    assert changed.pinned is not None and fingerprint(changed.pinned) == fingerprint(key)
    assert pins.check(BOX_2222, key).verdict == "unknown"  # another port is another host, as for OpenSSH
    assert pins.check(OTHER, key).verdict == "unknown"


def test_added_pins_are_openssh_lines_in_a_private_file(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    pins = KnownHosts(tmp_path / "devenv" / "known_hosts", system=tmp_path / "absent")
    pins.add(BOX, keys["ed25519"].key)
    pins.add(BOX_2222, keys["ecdsa"].key)
    assert stat.S_IMODE(pins.path.stat().st_mode) == 0o600
    assert keygen_finds(pins.path, "gpu-box") and keygen_finds(pins.path, "[gpu-box]:2222")
    assert not keygen_finds(pins.path, "other-box")
    lines = pins.path.read_text().splitlines()
    assert lines[0] == f"gpu-box {keys['ed25519'].public.split()[0]} {keys['ed25519'].public.split()[1]}"
    # and OpenSSH's client accepts the file as a known_hosts: `ssh -G` is not enough, so ask ssh-keygen to hash it
    copy = tmp_path / "hashed"
    shutil.copy(pins.path, copy)
    subprocess.run(["ssh-keygen", "-H", "-f", str(copy)], check=True, capture_output=True)
    assert keygen_finds(copy, "[gpu-box]:2222")


def test_forget_removes_only_that_hosts_lines(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    pins = KnownHosts(tmp_path / "known_hosts", system=tmp_path / "absent")
    pins.add(BOX, keys["ed25519"].key)
    pins.add(BOX, keys["ecdsa"].key)
    pins.add(BOX_2222, keys["ed25519"].key)
    pins.add(OTHER, keys["ed25519-b"].key)
    with pins.path.open("a") as out:
        out.write("# a comment someone left\n")
    assert pins.forget(BOX) == 2
    assert pins.check(BOX, keys["ed25519"].key).verdict == "unknown"
    assert pins.check(BOX_2222, keys["ed25519"].key).verdict == "known"
    assert pins.check(OTHER, keys["ed25519-b"].key).verdict == "known"
    assert "# a comment someone left" in pins.path.read_text()
    assert stat.S_IMODE(pins.path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".known_hosts")]  # no staging file left
    assert pins.forget(BOX) == 0
    assert KnownHosts(tmp_path / "never", system=tmp_path / "absent").forget(BOX) == 0


@pytest.mark.parametrize("hashed", [False, True])
def test_the_system_known_hosts_is_honoured_and_never_written(
    tmp_path: Path, keys: dict[str, KeyFile], hashed: bool
) -> None:
    system = tmp_path / "ssh" / "known_hosts"
    system.parent.mkdir()
    public = keys["ed25519"].public.split()
    system.write_text(f"gpu-box,10.0.0.5 {public[0]} {public[1]}\n[gpu-box]:2222 {public[0]} {public[1]}\n")
    if hashed:  # Debian's ssh hashes what it writes (HashKnownHosts yes)
        subprocess.run(["ssh-keygen", "-H", "-f", str(system)], check=True, capture_output=True)
        assert "gpu-box" not in system.read_text()
    before = system.read_bytes()
    pins = KnownHosts(tmp_path / "devenv" / "known_hosts", system=system)
    known = pins.check(BOX, keys["ed25519"].key)
    assert (known.verdict, known.where) == ("known", system)
    assert pins.check(BOX_2222, keys["ed25519"].key).verdict == "known"
    changed = pins.check(BOX, keys["ed25519-b"].key)
    assert (changed.verdict, changed.where) == ("changed", system)
    assert pins.forget(BOX) == 0
    assert system.read_bytes() == before
    assert not pins.path.exists()


def test_pinned_types_come_from_both_files_without_repeats(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    system = tmp_path / "system_known_hosts"
    ecdsa, ed25519 = keys["ecdsa"].public.split(), keys["ed25519"].public.split()
    system.write_text(f"gpu-box {ecdsa[0]} {ecdsa[1]}\ngpu-box {ed25519[0]} {ed25519[1]}\n")
    pins = KnownHosts(tmp_path / "known_hosts", system=system)
    assert pins.pinned_types(BOX) == ["ecdsa-sha2-nistp256", "ssh-ed25519"]
    pins.add(BOX, keys["rsa"].key)
    assert pins.pinned_types(BOX) == ["ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"]
    assert pins.pinned_types(OTHER) == []


# --- SshSession._verify --------------------------------------------------------------------------


def session_for(tmp_path: Path, keys: dict[str, KeyFile], target: SshTarget = BOX) -> SshSession:
    return SshSession(target, keys["ed25519"].key, KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none"))


def test_an_unknown_host_key_raises_with_its_fingerprint_to_confirm(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    session = session_for(tmp_path, keys, BOX_2222)
    host_key = keys["ecdsa"].key
    with pytest.raises(HostKeyUnknown) as caught:
        session._verify(host_key, None)
    seen = ssh_keygen_fingerprint(keys["ecdsa"].path.with_suffix(".pub"))
    assert caught.value.data == {"fingerprint": seen, "key_type": "ecdsa-sha2-nistp256", "host": "[gpu-box]:2222"}
    assert seen in caught.value.message and f"--trust {seen}" in (caught.value.hint or "")
    assert caught.value.exit_code == 2
    assert not session.known_hosts.path.exists()  # never a silent accept
    wire = json.loads(json.dumps(error_payload(caught.value)))
    back = error_from_payload(wire)
    assert type(back) is HostKeyUnknown and back.code == "host_key_unknown"
    assert back.data == caught.value.data and back.message == caught.value.message and back.hint == caught.value.hint


def test_trusting_the_right_fingerprint_pins_it(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    session = session_for(tmp_path, keys)
    host_key = keys["ed25519-b"].key
    session._verify(host_key, f"  {fingerprint(host_key)}\n")  # as pasted from a terminal
    assert session.known_hosts.check(BOX, host_key).verdict == "known"
    assert keygen_finds(session.known_hosts.path, "gpu-box")
    session._verify(host_key, None)  # known now: no trust needed
    session._verify(host_key, fingerprint(host_key))  # and trusting again pins nothing more
    assert len(session.known_hosts.path.read_text().splitlines()) == 1


def test_trusting_another_fingerprint_is_refused_and_pins_nothing(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    session = session_for(tmp_path, keys)
    host_key, confirmed = keys["ed25519-b"].key, fingerprint(keys["ed25519"].key)
    with pytest.raises(HostKeyChanged) as caught:
        session._verify(host_key, confirmed)
    assert caught.value.data == {"fingerprint": fingerprint(host_key), "key_type": "ssh-ed25519"}
    assert confirmed in caught.value.message and fingerprint(host_key) in caught.value.message
    assert not session.known_hosts.path.exists()


def test_a_changed_host_key_is_refused_even_when_trusted(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    session = session_for(tmp_path, keys)
    pinned, now = keys["ed25519"].key, keys["ed25519-b"].key
    session.known_hosts.add(BOX, pinned)
    for trust in (None, fingerprint(now)):
        with pytest.raises(HostKeyChanged) as caught:
            session._verify(now, trust)
        assert caught.value.data == {
            "fingerprint": fingerprint(now),
            "pinned": fingerprint(pinned),
            "key_type": "ssh-ed25519",
        }
        assert "CHANGED" in caught.value.message and str(session.known_hosts.path) in caught.value.message
        assert "gpu-box" in (caught.value.hint or "")
    assert session.known_hosts.check(BOX, pinned).verdict == "known"  # the old pin stays until a person removes it
    back = error_from_payload(json.loads(json.dumps(error_payload(caught.value))))
    assert type(back) is HostKeyChanged and back.data["pinned"] == fingerprint(pinned)


def test_a_known_host_key_passes(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    session = session_for(tmp_path, keys)
    session.known_hosts.add(BOX, keys["rsa"].key)
    session._verify(keys["rsa"].key, None)


# --- the same checks against a real SSH handshake (an in-process paramiko server) ----------------


class _Accepting(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL


class SshServer:
    """An SSH server on 127.0.0.1 serving the given host keys; logs in anyone with a key."""

    def __init__(self, host_keys: list[paramiko.PKey]) -> None:
        self.host_keys = host_keys
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            for key in self.host_keys:
                transport.add_server_key(key)
            self.transports.append(transport)
            with contextlib.suppress(Exception):
                transport.start_server(event=threading.Event(), server=_Accepting())

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[SshServer] = []

    def start(*host_keys: paramiko.PKey) -> SshServer:
        servers.append(SshServer(list(host_keys)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_first_contact_then_trust_then_pinned_over_a_real_handshake(
    tmp_path: Path, keys: dict[str, KeyFile], serve: Any
) -> None:
    server = serve(keys["ed25519-b"].key)
    target = SshTarget("op", "127.0.0.1", server.port)
    pins = KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none")
    session = SshSession(target, keys["ed25519"].key, pins)
    with pytest.raises(HostKeyUnknown) as caught:
        session.transport()
    assert caught.value.data["fingerprint"] == fingerprint(keys["ed25519-b"].key)
    assert caught.value.data["host"] == f"[127.0.0.1]:{server.port}"
    try:
        assert session.transport(trust=str(caught.value.data["fingerprint"])).is_authenticated()
    finally:
        session.close()
    again = SshSession(target, keys["ed25519"].key, pins)
    try:
        assert again.transport().is_authenticated()  # pinned: no trust needed
    finally:
        again.close()


def test_a_changed_key_over_a_real_handshake_is_refused(tmp_path: Path, keys: dict[str, KeyFile], serve: Any) -> None:
    server = serve(keys["ed25519-b"].key)
    target = SshTarget("op", "127.0.0.1", server.port)
    pins = KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none")
    pins.add(target, keys["ed25519"].key)
    with pytest.raises(HostKeyChanged):
        SshSession(target, keys["ed25519"].key, pins).transport(trust=fingerprint(keys["ed25519-b"].key))


def test_a_pinned_ecdsa_key_is_asked_for_first(tmp_path: Path, keys: dict[str, KeyFile], serve: Any) -> None:
    """The host serves ed25519 and ECDSA keys; the person's known_hosts pins the ECDSA one only."""
    server = serve(keys["ed25519-b"].key, keys["ecdsa"].key)
    target = SshTarget("op", "127.0.0.1", server.port)
    system = tmp_path / "system"
    public = keys["ecdsa"].public.split()
    system.write_text(f"[127.0.0.1]:{server.port} {public[0]} {public[1]}\n")
    session = SshSession(target, keys["ed25519"].key, KnownHosts(tmp_path / "known_hosts", system=system))
    try:
        assert session.transport().get_remote_server_key().get_name() == "ecdsa-sha2-nistp256"
    finally:
        session.close()


def test_a_pinned_rsa_key_is_asked_for_first(tmp_path: Path, keys: dict[str, KeyFile], serve: Any) -> None:
    server = serve(keys["ed25519-b"].key, keys["rsa"].key)
    target = SshTarget("op", "127.0.0.1", server.port)
    system = tmp_path / "system"
    public = keys["rsa"].public.split()
    system.write_text(f"[127.0.0.1]:{server.port} {public[0]} {public[1]}\n")  # what OpenSSH writes for RSA
    session = SshSession(target, keys["ed25519"].key, KnownHosts(tmp_path / "known_hosts", system=system))
    try:
        assert session.transport().get_remote_server_key().get_name() == "ssh-rsa"
    finally:
        session.close()


def test_a_closed_port_is_engine_unreachable_naming_the_host(tmp_path: Path, keys: dict[str, KeyFile]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    session = SshSession(
        SshTarget("op", "127.0.0.1", port),
        keys["ed25519"].key,
        KnownHosts(tmp_path / "known_hosts", system=tmp_path / "none"),
    )
    with pytest.raises(EngineUnreachable) as caught:
        session.transport()
    assert f"ssh://op@127.0.0.1:{port}" in caught.value.message


# --- host facts ----------------------------------------------------------------------------------

NVIDIA_SMI = """\
0, NVIDIA A100-SXM4-80GB, 81920, 4, 0
1, NVIDIA A100-SXM4-80GB, 81920, 30512, 97

2, Tesla K80, [N/A], [N/A], [N/A]
3, NVIDIA GeForce RTX 3090, 24576, 600, [Not Supported]
"""


def test_parse_gpus_reads_nvidia_smi_csv() -> None:
    gpus = parse_gpus(NVIDIA_SMI)
    assert [(g.index, g.name, g.memory_total_mib, g.memory_used_mib, g.utilization_percent) for g in gpus] == [
        ("0", "NVIDIA A100-SXM4-80GB", 81920, 4, 0),
        ("1", "NVIDIA A100-SXM4-80GB", 81920, 30512, 97),
        ("2", "Tesla K80", 0, 0, 0),
        ("3", "NVIDIA GeForce RTX 3090", 24576, 600, 0),
    ]
    assert [g.busy for g in gpus] == [False, True, False, True]  # 3: 600 MiB in use by something else
    assert all(g.workspace is None for g in gpus)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
        "No devices were found\n",
        "sh: 1: nvidia-smi: not found\n",
    ],
)
def test_parse_gpus_finds_none_in_other_words(output: str) -> None:
    assert parse_gpus(output) == []


def test_parse_df_reads_real_df_output() -> None:
    shown = subprocess.run(["df", "-PB1", "/"], capture_output=True, text=True, check=True).stdout
    parsed = parse_df(shown)
    assert parsed is not None
    free, total = parsed
    usage = shutil.disk_usage("/")
    assert total == usage.total
    assert abs(free - usage.free) < 256 * 1024**2  # the disk is in use while we look
    assert 0 <= free <= total


def test_parse_df_canned_and_refusals() -> None:
    canned = (
        "Filesystem         1-blocks        Used   Available Capacity Mounted on\n"
        "/dev/nvme0n1p2 1967317004288 51234567168 1816038920192       3% /var/lib/docker\n"
    )
    assert parse_df(canned) == (1816038920192, 1967317004288)
    assert parse_df("df: /nope: No such file or directory\n") is None
    assert parse_df("Filesystem 1-blocks Used Available Capacity Mounted on\n") is None
    assert parse_df("Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/x a b c 3% /\n") is None


# --- tunnels -------------------------------------------------------------------------------------


class _Channel:
    """What the tunnel uses of a paramiko Channel, over one end of a socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def _echo(sock: socket.socket) -> None:
    with sock:
        while data := sock.recv(65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


class StubSession:
    """An SshSession whose channels lead to an echo server; `fail` makes the next channels fail."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []
        self.fail = 0

    def open_channel(self, address: str, port: int) -> _Channel:
        self.opened.append((address, port))
        if self.fail:
            self.fail -= 1
            raise EngineUnreachable(f"ssh://op@gpu-box could not reach {address}:{port} for devenv (refused)")
        near, far = socket.socketpair()
        threading.Thread(target=_echo, args=(far,), daemon=True).start()
        return _Channel(near)


def roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := client.recv(65536):
            received += chunk
    return bytes(received)


@pytest.fixture
def tunnels() -> Iterator[tuple[Tunnels, StubSession]]:
    session = StubSession()
    made = Tunnels(cast(SshSession, session))
    yield made, session
    made.close()


def test_bytes_sent_to_the_local_port_reach_the_container_and_come_back(tunnels: tuple[Tunnels, StubSession]) -> None:
    made, session = tunnels
    port = made.local_port("devenv-a", "172.17.0.2", 22)
    assert roundtrip(port, b"SSH-2.0-OpenSSH_9.6\r\n") == b"SSH-2.0-OpenSSH_9.6\r\n"
    big = os.urandom(3 * 1024 * 1024)  # more than one read, in both directions at once
    assert roundtrip(port, big) == big
    assert session.opened == [("172.17.0.2", 22), ("172.17.0.2", 22)]  # a channel per connection


def test_a_tunnel_keeps_its_port_and_follows_a_new_address(tunnels: tuple[Tunnels, StubSession]) -> None:
    made, session = tunnels
    ssh = made.local_port("devenv-a", "172.17.0.2", 22)
    jupyter = made.local_port("devenv-a", "172.17.0.2", 8888)
    assert ssh != jupyter
    assert made.local_port("devenv-a", "172.17.0.2", 22) == ssh
    assert made.local_port("devenv-a", "172.17.0.7", 22) == ssh  # restarted with a new address: same local port
    assert roundtrip(ssh, b"hi") == b"hi"
    assert session.opened[-1] == ("172.17.0.7", 22)
    assert roundtrip(jupyter, b"GET /") == b"GET /"
    assert session.opened[-1] == ("172.17.0.2", 8888)


def test_a_wished_for_port_is_used_when_free_and_another_when_taken(tunnels: tuple[Tunnels, StubSession]) -> None:
    made, _session = tunnels
    with socket.create_server(("127.0.0.1", 0)) as taken:
        wish = taken.getsockname()[1]
        elsewhere = made.local_port("devenv-a", "172.17.0.2", 22, wish=wish)
        assert elsewhere != wish
        assert roundtrip(elsewhere, b"x") == b"x"
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    assert made.local_port("devenv-b", "172.17.0.3", 22, wish=free) == free


def test_keep_only_closes_the_tunnels_of_other_containers(tunnels: tuple[Tunnels, StubSession]) -> None:
    made, _session = tunnels
    gone = [made.local_port("devenv-a", "172.17.0.2", port) for port in (22, 8888)]
    kept = made.local_port("devenv-b", "172.17.0.3", 22)
    made.keep_only({"devenv-b"})
    for port in gone:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    assert roundtrip(kept, b"still here") == b"still here"
    again = made.local_port("devenv-a", "172.17.0.2", 22)  # running again: a new tunnel
    assert roundtrip(again, b"back") == b"back"
    made.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", kept), timeout=2)


def test_a_channel_that_fails_closes_that_connection_only(
    tunnels: tuple[Tunnels, StubSession], caplog: pytest.LogCaptureFixture
) -> None:
    made, session = tunnels
    port = made.local_port("devenv-a", "172.17.0.2", 22)
    session.fail = 1
    with (
        caplog.at_level(logging.WARNING, logger="devenv.tunnels"),
        socket.create_connection(("127.0.0.1", port), timeout=5) as client,
    ):
        client.sendall(b"hello")
        try:
            answer = client.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed, not left hanging
    assert any(
        f"127.0.0.1:{port}" in record.getMessage() and "could not reach" in record.getMessage()
        for record in caplog.records
    )
    assert roundtrip(port, b"next one works") == b"next one works"  # the listener lives on
