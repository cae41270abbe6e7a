"""SSH keys for cloud instances: the daemon's login key (made once) and a host key per instance.

devenv makes each instance's host key itself and hands it to the instance in its user data, so the
first connection is verified against a key devenv already knows: no trust-on-first-use for machines
it created. (User data is readable with ec2:DescribeInstanceAttribute and, on the instance, from the
metadata service; devenv launches with IMDSv2 and a hop limit of 1, so containers cannot read it.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    private: str  # OpenSSH private key text
    public: str  # "ssh-ed25519 AAAA... comment"

    @property
    def public_base64(self) -> str:
        return self.public.split()[1]


def new_key(comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private, f"{public} {comment}")


def login_key(folder: Path) -> KeyPair:
    """The daemon's key for its instances, made on first use (0600, never leaves this machine)."""
    path = folder / "id_ed25519"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        made = new_key("devenv")
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(made.private)
        staging.with_suffix(".pub").write_text(made.public + "\n")
        os.replace(staging.with_suffix(".pub"), path.with_name(path.name + ".pub"))
        os.replace(staging, path)
    return KeyPair(path.read_text(), path.with_name(path.name + ".pub").read_text().strip())
