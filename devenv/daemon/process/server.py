"""The devenvd process: one per home, holding the store, the loops and the listening sockets.

Startup migrates the store, then serves on a unix socket made with mode 0600 from the first
instant (umask), and optionally on TCP where every call needs a token. The reconciler's first
pass runs at once, so work a killed daemon left half done resumes without waiting for a request.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from devenv import __version__, paths
from devenv.access.ssh_ca import SshCertificateAuthority
from devenv.backends.ssh.known_hosts import KnownHosts
from devenv.daemon.api.app import Services, create_app
from devenv.daemon.api.gate import BodyLimits
from devenv.daemon.api.jupyter_proxy import JupyterGateway
from devenv.daemon.background.autostop import Autostop
from devenv.daemon.background.idle import IdleThresholds
from devenv.daemon.background.loop import Loop
from devenv.daemon.background.reconciler import Reconciler
from devenv.daemon.services.access import Access
from devenv.daemon.services.backends import Backends, load_backends
from devenv.daemon.services.converge import Converger
from devenv.daemon.services.events import EventBus, EventLog
from devenv.daemon.services.hooks import GitHooks
from devenv.daemon.services.hosts import Hosts
from devenv.daemon.services.projects import Projects
from devenv.daemon.services.scheduler import Scheduler
from devenv.daemon.services.secrets import SecretBox, Secrets, key_path
from devenv.daemon.services.setup import WorkspaceSetup
from devenv.daemon.services.tokens import Tokens
from devenv.daemon.services.versioning import Versioning
from devenv.daemon.services.workspaces import ExecTracker, WorkspaceService
from devenv.daemon.store.db import make_engine, migrate, session_factory
from devenv.daemon.store.identity import store_id
from devenv.errors import UsageError

log = logging.getLogger("devenvd")
BACKLOG = 512  # connections waiting to be accepted: a burst of clients (a thousand followers reconnecting)


@dataclass(frozen=True)
class Settings:
    reconcile_interval: float = 10.0
    certificate_ttl: float = 3600.0
    autostop_interval: float = 30.0
    idle_cpu_percent: float = 10.0
    idle_gpu_percent: float = 5.0
    access_interval: float = 2.0
    web_listen: str = "tcp://127.0.0.1:0"

    @classmethod
    def from_env(cls) -> Settings:
        def number(name: str, default: float) -> float:
            raw = os.environ.get(name)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError:
                raise UsageError(f"{name}={raw!r}: expected a number") from None

        return cls(
            number("DEVENV_RECONCILE_INTERVAL", cls.reconcile_interval),
            number("DEVENV_SSH_CERT_TTL", cls.certificate_ttl),
            number("DEVENV_AUTOSTOP_INTERVAL", cls.autostop_interval),
            number("DEVENV_IDLE_CPU_PERCENT", cls.idle_cpu_percent),
            number("DEVENV_IDLE_GPU_PERCENT", cls.idle_gpu_percent),
            number("DEVENV_ACCESS_INTERVAL", cls.access_interval),
            os.environ.get("DEVENV_WEB_LISTEN", cls.web_listen),
        )


def hold_home_lock() -> IO[str] | None:
    """Take the home's daemon lock (flock); None when another daemon holds it. Writes our pid."""
    handle = open(paths.daemon_lock_path(), "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def unix_listener(path: Path) -> socket.socket:
    if len(str(path).encode()) > 107:
        raise UsageError(
            f"socket path {path} is too long for a unix socket (107 bytes at most)",
            hint="set DEVENV_HOME (or DEVENV_SOCKET) to a shorter folder",
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        path.unlink()  # stale: we hold the home lock, so no live daemon serves it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # created 0600: never reachable by others, not even for an instant
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    listener.listen(BACKLOG)
    return listener


def tcp_listener(url: str) -> socket.socket:
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise UsageError(f"--listen {url}: expected tcp://HOST:PORT")
    family = socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle adds 40 ms per call)
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((parts.hostname, parts.port))
    except OSError as exc:
        raise UsageError(f"--listen {url}: cannot listen there ({exc.strerror})") from exc
    listener.listen(BACKLOG)
    return listener


@dataclass
class Daemon:
    """The daemon's parts, wired together; tests assemble one around a fake backend."""

    services: Services
    converger: Converger
    scheduler: Scheduler
    reconciler: Reconciler
    autostop: Autostop


def assemble(
    sessions: sessionmaker[Session], backends: Backends, home: Path, settings: Settings | None = None
) -> Daemon:
    """The daemon's parts; `home` holds the uploaded projects, the SSH CA and the secrets key."""
    settings = settings or Settings()
    bus = EventBus()
    events = EventLog(sessions, bus)
    box = SecretBox(key_path(home))  # the key file is made on first use
    secrets = Secrets(sessions, events, box)
    hosts = Hosts(sessions, backends, box, KnownHosts(home / "known_hosts"), events)
    hosts.load()
    (home / "projects").mkdir(parents=True, exist_ok=True, mode=0o700)
    projects = Projects(sessions, home / "projects")
    access = Access(
        sessions,
        SshCertificateAuthority(home / "ca"),
        events,
        backends,
        home / "ca" / "web.key",
        certificate_ttl=settings.certificate_ttl,
    )
    jupyter = JupyterGateway(access, sessions, backends)
    setup = WorkspaceSetup(sessions, projects, events, secrets)
    converger = Converger(sessions, backends, projects, events, access, setup, store_id(sessions))
    scheduler = Scheduler(converger.converge)
    execs = ExecTracker()
    workspaces = WorkspaceService(sessions, backends, projects, events, scheduler, converger, execs, hosts)
    reconciler = Reconciler(sessions, backends, converger, scheduler, events)
    autostop = Autostop(
        sessions,
        backends,
        workspaces,
        events,
        IdleThresholds(settings.idle_cpu_percent, settings.idle_gpu_percent),
        execs,
    )
    services = Services(
        workspaces=workspaces,
        events=events,
        bus=bus,
        tokens=Tokens(sessions),
        access=access,
        jupyter=jupyter,
        secrets=secrets,
        versioning=Versioning(sessions, workspaces, setup, events),
        hooks=GitHooks(secrets, projects, backends, events),
        hosts=hosts,
    )
    return Daemon(services, converger, scheduler, reconciler, autostop)


def serve(listen: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)  # the store, logs and unpacked projects are the daemon's alone
    home_lock = hold_home_lock()
    if home_lock is None:
        pid = paths.daemon_lock_path().read_text().strip()
        print(f"devenvd is already running for {paths.home_dir()} (pid {pid})", file=sys.stderr)
        return 0
    settings = Settings.from_env()
    BodyLimits.from_env()  # a bad DEVENV_MAX_BODY_BYTES stops the daemon here, with its name (the gate reads it)
    engine = make_engine(paths.database_url())
    migrate(engine)
    daemon = assemble(session_factory(engine), load_backends(paths.daemon_config_path()), paths.home_dir(), settings)
    services, events, scheduler, autostop = daemon.services, daemon.services.events, daemon.scheduler, daemon.autostop
    from devenv.daemon.process.http_server import DaemonServer, server_config

    socket_path = paths.socket_path()
    tcp = [tcp_listener(url) for url in listen]
    if not tcp and settings.web_listen not in ("", "off"):
        tcp.append(tcp_listener(settings.web_listen))  # JupyterLab for browsers; /v1 there needs a token
    if tcp:
        host, port = tcp[0].getsockname()[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
        services.jupyter.web_url = f"http://{host}:{port}"
    services.jupyter.public_url = os.environ.get("DEVENV_PUBLIC_URL") or None
    sockets = [unix_listener(socket_path), *tcp]
    app = create_app(services, socket_path=str(socket_path))
    server = DaemonServer(server_config(app), services.bus)
    services.shutdown = lambda: setattr(server, "should_exit", True)

    def expire_access() -> None:
        services.access.expire()  # (the count of grants ended is for its tests)

    loops = [
        Loop("reconciler", daemon.reconciler.run_pass, settings.reconcile_interval),
        Loop("autostop", autostop.run_pass, settings.autostop_interval),
        Loop("access", expire_access, settings.access_interval),
    ]
    for loop in loops:
        loop.start()
    where = ", ".join([f"unix://{socket_path}", *listen])
    if services.jupyter.public_url or services.jupyter.web_url:
        where += f"; JupyterLab at {services.jupyter.public_url or services.jupyter.web_url}"
    events.record(None, "daemon", f"devenvd {__version__} started (pid {os.getpid()}) on {where}")
    log.info("devenvd %s serving on %s", __version__, where)
    try:
        server.run(sockets=sockets)
    finally:
        for loop in loops:
            loop.stop()
        scheduler.shutdown()
        autostop.shutdown()
        events.record(None, "daemon", "devenvd stopped")
        socket_path.unlink(missing_ok=True)
        home_lock.close()
    return 0
