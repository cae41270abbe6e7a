"""Pinned SSH host keys: devenv's own known_hosts file, plus the daemon user's ~/.ssh/known_hosts.

A key is added only when a person confirmed its fingerprint (`devenv host add`, or `--trust`); a
host answering with another key than the pinned one is refused until the pin is removed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko

from devenv.backends.ssh.target import SshTarget

Verdict = Literal["known", "unknown", "changed"]


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint, exactly as `ssh-keygen -l` and ssh's first-contact prompt print it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    pinned: paramiko.PKey | None = None  # the key we expected, when it changed
    where: Path | None = None  # the file holding the pin


class KnownHosts:
    def __init__(self, path: Path, system: Path | None = None) -> None:
        self.path = path
        self.system = system if system is not None else Path.home() / ".ssh" / "known_hosts"
        self._lock = threading.Lock()

    def _load(self, path: Path) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if path.is_file():
            keys.load(str(path))
        return keys

    def pinned_types(self, target: SshTarget) -> list[str]:
        """The key types pinned for the host: asked for first, as OpenSSH does, so a pin is not missed."""
        types: list[str] = []
        for path in (self.path, self.system):
            entry = self._load(path).lookup(target.known_hosts_name)
            types += [kind for kind in (entry.keys() if entry else []) if kind not in types]
        return types

    def check(self, target: SshTarget, key: paramiko.PKey) -> Check:
        for path in (self.path, self.system):
            entry = self._load(path).lookup(target.known_hosts_name)
            if not entry:
                continue
            pinned = entry.get(key.get_name())
            if pinned is not None and pinned == key:
                return Check("known", where=path)
            if pinned is not None:
                return Check("changed", pinned, path)
        return Check("unknown")

    def pinned_keys(self, target: SshTarget) -> list[str]:
        """The base64 of every key pinned for the host, in either file."""
        found = []
        for path in (self.path, self.system):
            entry = self._load(path).lookup(target.known_hosts_name)
            found += [key.get_base64() for key in (entry.values() if entry else [])]
        return found

    def add(self, target: SshTarget, key: paramiko.PKey) -> None:
        """Pin the key (one line appended, the file kept 0600)."""
        self.add_line(target, key.get_name(), key.get_base64())

    def add_line(self, target: SshTarget, key_type: str, key_base64: str) -> None:
        """Pin a key known by its text: a host key devenv made itself and gave the host (a cloud instance)."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            line = f"{target.known_hosts_name} {key_type} {key_base64}\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write(line)

    def forget(self, target: SshTarget) -> int:
        """Remove devenv's pins for the host (the system file is the person's own); returns how many."""
        with self._lock:
            if not self.path.is_file():
                return 0
            name = target.known_hosts_name
            lines = self.path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if name not in line.split(" ", 1)[0].split(",")]
            removed = len(lines) - len(kept)
            staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.writelines(kept)
            os.replace(staging, self.path)
            return removed
