"""The slow path of plain `ssh WS.devenv`: ssh-config's ProxyCommand fallback and its renewal hook.

ssh-config's ProxyCommand first tries bash's /dev/tcp to the address cached in `HOST.addr` (no
Python start); this module runs when that fails (no cache, or the workspace moved) and on renewal.

    python -m devenv.cli.ssh_proxy HOST                 relay stdin/stdout to the workspace's sshd
    python -m devenv.cli.ssh_proxy --renew HOST KEY     renew HOST's certificate when it is near its end

Both run on every ssh, scp or VS Code connection, so the usual case imports only the standard
library and reads devenv's small cache (where the workspace's sshd is, when the certificate is due):
the daemon is asked only when the cache is missing, stale or near its end.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

SUFFIX = ".devenv"
RENEW_BEFORE = 300  # seconds: a certificate with less left than this is replaced
LOGINS_VERSION = 2  # cached certificates from before per-person logins (everyone was `dev`) are renewed


def cache_dir() -> Path:
    from devenv import paths

    folder = paths.home_dir() / "ssh"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def workspace_of(host: str) -> str:
    return host[: -len(SUFFIX)] if host.endswith(SUFFIX) else host


def renew_due(host: str) -> bool:
    try:
        return float((cache_dir() / f"{host}.renew-at").read_text()) <= time.time()
    except (OSError, ValueError):
        return True


def renew(host: str, key: Path, *, force: bool = False) -> dict[str, object]:
    """A certificate for `key` on the workspace behind `host`, from the cache while it has time left."""
    folder = cache_dir()
    meta_path = folder / f"{host}.json"
    public = key.with_name(key.name + ".pub").read_text().strip()
    if not force and not renew_due(host) and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("public_key") == public and meta.get("logins") == LOGINS_VERSION:
            return meta
    from devenv.client import Client

    answer = Client().ssh_certificate(workspace_of(host), public + "\n")
    _write(folder / f"{host}-cert.pub", str(answer["certificate"]) + "\n")
    _write(folder / "known_hosts", f"@cert-authority *{SUFFIX} {answer['host_ca']}\n")
    meta = {name: answer[name] for name in ("valid_before", "host", "port", "user", "principal", "host_name")}
    meta["public_key"] = public
    meta["logins"] = LOGINS_VERSION
    remember_user(host, str(answer["user"]))
    _write(meta_path, json.dumps(meta))
    if port := answer["port"]:
        remember_address(host, str(answer["host"]), int(port))
    _write(folder / f"{host}.renew-at", f"{int(float(answer['valid_before'])) - RENEW_BEFORE}\n")
    return meta


def remember_user(host: str, user: str) -> None:
    """Whom HOST's sshd expects: `dev` for its owner, a login of their own for a grantee (ssh-config
    includes users.d/*.conf, so plain `ssh HOST` logs in under it)."""
    folder = cache_dir() / "users.d"
    folder.mkdir(mode=0o700, exist_ok=True)
    if not user.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"the daemon named an odd login for {host}: {user!r}")
    _write(folder / f"{host}.conf", f"Host {host}\n    User {user}\n")


def remember_address(host: str, address: str, port: int) -> None:
    """Where HOST's sshd is: ssh-config's ProxyCommand connects there without asking the daemon."""
    _write(cache_dir() / f"{host}.addr", f"{address}/{port}\n")


def _write(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)


def _address(host: str) -> tuple[str, int] | None:
    try:
        meta = json.loads((cache_dir() / f"{host}.json").read_text())
        return str(meta["host"]), int(meta["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fresh_address(host: str) -> tuple[str, int]:
    from devenv.client import Client
    from devenv.errors import UsageError

    ws = Client().workspace(workspace_of(host))
    port = ws.get("ssh_port")
    if ws.get("state") != "running" or not port:
        raise UsageError(
            f"workspace {ws.get('name')} is {ws.get('state')}", hint=f"`devenv start {ws.get('name')}` first"
        )
    meta_path = cache_dir() / f"{host}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {"host": "127.0.0.1"}
    meta["port"] = int(port)
    _write(meta_path, json.dumps(meta))
    remember_address(host, str(meta["host"]), int(meta["port"]))
    return str(meta["host"]), int(meta["port"])


def connect(host: str) -> socket.socket:
    """The workspace's sshd: where the cache says, else (or when that fails) where the daemon says."""
    cached = _address(host)
    if cached is not None:
        try:
            return socket.create_connection(cached, timeout=10)
        except OSError:
            pass  # restarted on another port, or gone: ask the daemon
    return socket.create_connection(_fresh_address(host), timeout=10)


def relay(sock: socket.socket) -> None:
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def upstream() -> None:
        while True:
            data = os.read(0, 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)

    threading.Thread(target=upstream, daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            return
        os.write(1, data)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--renew"] and len(argv) == 3:
            if renew_due(argv[1]):
                renew(argv[1], Path(argv[2]))
            return 0
        if len(argv) != 1:
            print("usage: python -m devenv.cli.ssh_proxy HOST | --renew HOST KEY", file=sys.stderr)
            return 2
        relay(connect(argv[0]))
        return 0
    except OSError as error:
        print(f"devenv ssh-proxy: {argv[-1]}: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a DevenvError from the daemon: its message, not a traceback
        render = getattr(error, "render", None)
        print(f"devenv: {render() if render else error}", file=sys.stderr)
        return int(getattr(error, "exit_code", 1))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
