"""Where devenv keeps its own state: the daemon's store, socket, log and the client's login.

Everything lives under one folder, `DEVENV_HOME` when set (tests and several daemons on one
machine use that), else the platform's state folder for devenv.
"""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    override = os.environ.get("DEVENV_HOME")
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_state_dir("devenv"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def socket_path() -> Path:
    """The daemon's unix socket (mode 0600: the socket is the credential, as with Docker)."""
    override = os.environ.get("DEVENV_SOCKET")
    return Path(override) if override else home_dir() / "devenvd.sock"


def database_url() -> str:
    return os.environ.get("DEVENV_DATABASE_URL") or f"sqlite:///{home_dir() / 'devenv.db'}"


def daemon_log_path() -> Path:
    return home_dir() / "devenvd.log"


def daemon_lock_path() -> Path:
    """Held (flock) by the running daemon, so two never serve one home; it also holds the pid."""
    return home_dir() / "devenvd.pid"


def daemon_config_path() -> Path:
    return home_dir() / "daemon.yaml"


def login_path() -> Path:
    """The client's saved remote daemon (URL and token), mode 0600."""
    return home_dir() / "login.json"
