"""The daemon's SSH certificate authority: short-lived user certificates and a revocation list (KRL).

Workspaces trust the CA (`TrustedUserCAKeys`), accept only the principals the daemon lists, and
read a KRL (`RevokedKeys`) at each login, so access is granted and taken back without touching a
single authorized_keys file. Signing and KRLs are OpenSSH's own (`ssh-keygen -s`, `ssh-keygen -k`):
the formats are exactly what sshd reads, and the private key never leaves this folder (mode 0600).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devenv.errors import ToolMissing, UsageError

KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_PUBLIC_KEY_RE = re.compile(r"^(?P<type>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,3})(?: [^\r\n]*)?$")
_KEY_ID_RE = re.compile(r"[A-Za-z0-9@._:+-]{1,128}")
_CLOCK_SKEW = dt.timedelta(minutes=1)  # certificates start a minute early: clocks differ a little


@dataclass(frozen=True)
class Certificate:
    text: str  # one line, as ssh reads it from KEY-cert.pub
    serial: int
    key_id: str
    principals: tuple[str, ...]
    valid_after: dt.datetime
    valid_before: dt.datetime


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise ToolMissing(
            "ssh-keygen is not installed; the SSH certificate authority needs it",
            hint="install OpenSSH's client (Debian: apt-get install openssh-client)",
        )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([_ssh_keygen(), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UsageError(f"ssh-keygen {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def check_public_key(text: str) -> str:
    """One OpenSSH public key line (`ssh-ed25519 AAAA... comment`); UsageError naming what is wrong."""
    line = text.strip()
    match = _PUBLIC_KEY_RE.match(line)
    if "\n" in line or match is None:
        raise UsageError(
            "the public key must be one line like `ssh-ed25519 AAAA... comment`",
            hint="pass the .pub file (ssh-keygen -t ed25519 makes one), not the private key",
        )
    if match["type"] not in KEY_TYPES:
        raise UsageError(f"unsupported key type {match['type']!r} (supported: {', '.join(KEY_TYPES)})")
    return line


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


class SshCertificateAuthority:
    """An ed25519 CA kept in `folder` (ssh_ca, mode 0600; ssh_ca.pub)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key_path = folder / "ssh_ca"

    def ensure(self) -> SshCertificateAuthority:
        """Make the CA key once; later calls find it."""
        if not self.key_path.exists():
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".ca-"))
            try:
                _run("-q", "-t", "ed25519", "-N", "", "-C", "devenv SSH CA", "-f", str(staging / "ssh_ca"))
                os.chmod(staging / "ssh_ca", 0o600)
                os.replace(staging / "ssh_ca.pub", self.folder / "ssh_ca.pub")
                os.replace(staging / "ssh_ca", self.key_path)  # last: its presence means "made"
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self

    @property
    def public_key(self) -> str:
        return (self.folder / "ssh_ca.pub").read_text().strip()

    def sign(
        self,
        public_key: str,
        *,
        key_id: str,
        principals: Iterable[str],
        serial: int,
        valid_for: dt.timedelta = dt.timedelta(hours=1),
        now: dt.datetime | None = None,
        host: bool = False,
    ) -> Certificate:
        """A user (or, with `host`, a host) certificate for `public_key`, valid from a minute ago for `valid_for`."""
        key_line = check_public_key(public_key)
        names = tuple(principals)
        if not names or any(not _KEY_ID_RE.fullmatch(name) for name in names):
            raise UsageError(f"principals {names!r}: give at least one, letters, digits and @._:+- only")
        if not _KEY_ID_RE.fullmatch(key_id):
            raise UsageError(f"key id {key_id!r}: letters, digits and @._:+- only")
        if serial < 0 or valid_for <= dt.timedelta(0):
            raise UsageError("a certificate needs a serial >= 0 and a positive validity")
        now = now or dt.datetime.now(dt.UTC)
        valid_after, valid_before = now - _CLOCK_SKEW, now + valid_for
        with tempfile.TemporaryDirectory(prefix="devenv-sign-") as scratch:
            key_file = Path(scratch) / "user.pub"
            key_file.write_text(key_line + "\n")
            _run(
                "-q",
                "-s",
                str(self.key_path),
                *(["-h"] if host else []),
                "-I",
                key_id,
                "-n",
                ",".join(names),
                "-z",
                str(serial),
                "-V",
                f"{_stamp(valid_after)}:{_stamp(valid_before)}",
                str(key_file),
            )
            text = (Path(scratch) / "user-cert.pub").read_text().strip()
        return Certificate(text, serial, key_id, names, valid_after, valid_before)

    def host_keys(self, host_name: str, *, valid_for: dt.timedelta = dt.timedelta(days=365)) -> dict[str, bytes]:
        """A new ed25519 host key pair and its certificate for `host_name`: what a server's sshd needs.

        Clients that trust this CA for the name (`@cert-authority`) accept the server at once, and go
        on accepting it when it is rebuilt with new keys.
        """
        with tempfile.TemporaryDirectory(prefix="devenv-host-") as scratch:
            key = Path(scratch) / "host_ed25519_key"
            _run("-q", "-t", "ed25519", "-N", "", "-C", host_name, "-f", str(key))
            public = key.with_name(key.name + ".pub").read_text()
            cert = self.sign(
                public, key_id=host_name, principals=[host_name], serial=time.time_ns(), valid_for=valid_for, host=True
            )
            return {
                "host_ed25519_key": key.read_bytes(),
                "host_ed25519_key.pub": public.encode(),
                "host_ed25519_key-cert.pub": (cert.text + "\n").encode(),
            }

    def revocation_list(self, serials: Iterable[int] = (), key_ids: Iterable[str] = ()) -> bytes:
        """A KRL (binary, as sshd's RevokedKeys reads it) revoking these serials and key ids of our CA.

        An empty KRL is valid and revokes nothing; sshd refuses every key when it cannot read one,
        so workspaces always get a file, even an empty one.
        """
        lines = [f"serial: {int(serial)}" for serial in sorted(set(serials))]
        for key_id in sorted(set(key_ids)):
            if not _KEY_ID_RE.fullmatch(key_id):
                raise UsageError(f"key id {key_id!r}: letters, digits and @._:+- only")
            lines.append(f"id: {key_id}")
        with tempfile.TemporaryDirectory(prefix="devenv-krl-") as scratch:
            spec = Path(scratch) / "revoked.txt"
            spec.write_text("".join(f"{line}\n" for line in lines))
            out = Path(scratch) / "revoked.krl"
            _run("-q", "-k", "-f", str(out), "-s", str(self.folder / "ssh_ca.pub"), str(spec))
            return out.read_bytes()
