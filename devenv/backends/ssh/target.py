"""Where an SSH host is: `ssh://user@host[:port]`, parsed once with errors that say what to type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from devenv.errors import UsageError

_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_FORMAT = "ssh://USER@HOST[:PORT], e.g. ssh://ubuntu@gpu-box or ssh://me@10.0.0.5:2222"


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str
    port: int = 22

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}" + ("" if self.port == 22 else f":{self.port}")

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts, as OpenSSH writes it (`[host]:port` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_target(url: str) -> SshTarget:
    """The SSH host a URL names; UsageError (exit 2) for anything else, without echoing a password."""
    parts = urlsplit(url.strip())
    if parts.password is not None:  # first: no later message may echo the URL with it
        raise UsageError(
            "the host URL holds a password; devenv logs in with keys only",
            hint="drop the password and pass the private key with --identity FILE",
        )
    if parts.scheme != "ssh":
        raise UsageError(f"{url!r} is not an ssh:// URL", hint=f"write it as {_FORMAT}")
    try:
        port = 22 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise UsageError(f"{url!r}: the port is not a number between 1 and 65535", hint=f"write it as {_FORMAT}")
    if not parts.username or not _USER_RE.fullmatch(parts.username):
        raise UsageError(f"{url!r} names no valid user to log in as", hint=f"write it as {_FORMAT}")
    if not parts.hostname:
        raise UsageError(f"{url!r} names no host", hint=f"write it as {_FORMAT}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"{url!r}: a host URL has no path or query", hint=f"write it as {_FORMAT}")
    return SshTarget(parts.username, parts.hostname, port)
