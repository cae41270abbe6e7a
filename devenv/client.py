"""The one client of the daemon API, used by the CLI and the TUI alike.

Standard library only (http.client); its answers are typed by the wire models (devenv/wire.py,
TypedDicts, imported for type checking only). It is imported on every `devenv` command, and a command
like `devenv ls` should cost little more than the round trip. Errors the daemon answers come back
as the same DevenvError classes it raised (codes round-trip); a local daemon that does not answer
is started on demand.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from devenv import paths
from devenv.errors import DaemonUnreachable, DevenvError, UsageError, error_from_payload

if TYPE_CHECKING:  # the answers' types (devenv/wire.py): annotations only, nothing more to import at run time
    from devenv import wire

STREAM_TIMEOUT = 120.0  # the daemon sends a heartbeat line every 10 s on long streams
CALL_TIMEOUT = 60.0
HOST_PROBE_TIMEOUT = 90.0  # a host that does not answer takes its connect timeout, then the probe goes on


@dataclass(frozen=True)
class Target:
    """Where the daemon is: a unix socket (local, auto-started) or a TCP URL with a token."""

    socket: str | None = None
    host: str | None = None
    port: int | None = None
    token: str | None = None
    tls: bool = False

    @property
    def local(self) -> bool:
        return self.socket is not None

    def describe(self) -> str:
        return (
            f"unix://{self.socket}" if self.socket else f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"
        )


def parse_target(url: str, token: str | None = None) -> Target:
    """unix:///path, tcp://host:port, http(s)://host:port."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return Target(socket=parts.path)
    if parts.scheme in ("tcp", "http", "https") and parts.hostname:
        default = 443 if parts.scheme == "https" else 80
        return Target(host=parts.hostname, port=parts.port or default, token=token, tls=parts.scheme == "https")
    raise UsageError(f"daemon URL {url!r}: expected unix:///PATH, tcp://HOST:PORT or https://HOST:PORT")


def default_target() -> Target:
    """DEVENV_HOST (+ DEVENV_TOKEN), else the saved `devenv login`, else the local socket."""
    url = os.environ.get("DEVENV_HOST")
    if url:
        return parse_target(url, os.environ.get("DEVENV_TOKEN"))
    login = paths.login_path()
    if login.exists():
        saved = json.loads(login.read_text())
        return parse_target(saved["url"], saved.get("token"))
    return Target(socket=str(paths.socket_path()))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


T = TypeVar("T")


class Stream(Generic[T]):
    """A streamed answer (events, logs), sent when first read; `close()` from any thread ends it.

    A thread blocked reading a stream cannot be interrupted otherwise, and a follow stream's heartbeats
    keep it alive for ever: a UI closing a pane closes the stream, and the reader sees its end.
    """

    def __init__(
        self,
        client: Client,
        method: str,
        path: str,
        body: Any,
        read: Callable[[http.client.HTTPResponse], Iterator[T]],
        *,
        timeout: float | None = STREAM_TIMEOUT,
    ) -> None:
        self._client, self._request, self._read = client, (method, path, body), read
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._items: Iterator[T] | None = None
        self._lock = threading.Lock()
        self.closed = False

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        if self._items is None:
            self._items = self._run()
        return next(self._items)

    def _run(self) -> Iterator[T]:
        if self.closed:
            return
        connection, response = self._client._open(*self._request, self._timeout or STREAM_TIMEOUT)
        if self._timeout is None and connection.sock is not None:
            connection.sock.settimeout(None)  # connected and answered: now wait as long as it stays quiet
        with self._lock:
            self._connection = connection
            closed = self.closed
        if closed:  # closed while the request was on its way
            connection.close()
            return
        try:
            yield from self._read(response)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not self.closed:  # the daemon went away mid-stream, not us
                raise self._client._unreachable(exc) from exc
        finally:
            response.close()
            connection.close()

    def close(self) -> None:
        """End the stream now: a reader blocked on it wakes up and stops."""
        with self._lock:
            self.closed = True
            connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Client:
    def __init__(self, target: Target | None = None, *, autostart: bool = True) -> None:
        self.target = target or default_target()
        self.autostart = autostart and self.target.local

    # -- transport -----------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.target.socket:
            return _UnixConnection(self.target.socket, timeout)
        cls = http.client.HTTPSConnection if self.target.tls else http.client.HTTPConnection
        return cls(self.target.host or "localhost", self.target.port, timeout=timeout)

    def _send(self, method: str, path: str, body: Any, timeout: float) -> http.client.HTTPResponse:
        return self._open(method, path, body, timeout)[1]

    def _open(
        self, method: str, path: str, body: Any, timeout: float
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        connection = self.connected(timeout)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise self._unreachable(exc) from exc
        if response.status >= 400:
            raw = response.read()
            connection.close()
            raise self._error(response.status, raw)
        return connection, response

    def connected(self, timeout: float) -> http.client.HTTPConnection:
        """An open connection to the daemon; a local daemon that is not running is started first (autostart)."""
        for attempt in (1, 2):
            connection = self._connection(timeout)
            try:
                connection.connect()
                return connection
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                connection.close()
                if self.autostart and attempt == 1:
                    start_daemon()
                    continue
                raise self._unreachable(exc) from exc
            except OSError as exc:
                connection.close()
                raise self._unreachable(exc) from exc
        raise AssertionError("unreachable")

    def _unreachable(self, exc: BaseException) -> DaemonUnreachable:
        reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        hint = (
            "start it with `devenvd` (or let `devenv` start it: unset DEVENV_HOST)"
            if self.target.local
            else "check the URL and that the daemon runs there; `devenv login URL --token T` to change it"
        )
        return DaemonUnreachable(f"the devenv daemon at {self.target.describe()} does not answer ({reason})", hint=hint)

    @staticmethod
    def _error(status: int, raw: bytes) -> DevenvError:
        try:
            payload = json.loads(raw)
        except ValueError:
            return DevenvError(f"the daemon answered HTTP {status}: {raw[:200].decode(errors='replace')}")
        if isinstance(payload, dict) and "code" in payload:
            return error_from_payload(payload)
        detail = payload.get("detail") if isinstance(payload, dict) else payload
        return UsageError(f"the daemon refused the request (HTTP {status}): {json.dumps(detail)[:500]}")

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = CALL_TIMEOUT) -> Any:
        response = self._send(method, path, body, timeout)
        try:
            return json.loads(response.read() or b"null")
        finally:
            response.close()

    def lines(self, method: str, path: str, body: Any = None) -> Stream[Any]:
        """A newline-delimited JSON stream; blank heartbeat lines are skipped. Its lines' type: the caller's."""

        def read(response: http.client.HTTPResponse) -> Iterator[Any]:
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)

        return Stream(self, method, path, body, read)

    def chunks(self, path: str, *, timeout: float | None = STREAM_TIMEOUT) -> Stream[bytes]:
        """Raw bytes as they come; `timeout=None` for a stream that may stay quiet for ever (followed logs)."""

        def read(response: http.client.HTTPResponse) -> Iterator[bytes]:
            while chunk := response.read1(65536):
                yield chunk

        return Stream(self, "GET", path, None, read, timeout=timeout)

    # -- the API -------------------------------------------------------------------------------

    def health(self) -> wire.Health:
        return self.call("GET", "/v1/health", timeout=5)

    def whoami(self) -> str:
        return self.call("GET", "/v1/whoami")["actor"]

    def backends(self) -> list[wire.BackendView]:
        return self.call("GET", "/v1/backends")["items"]

    def workspaces(self, *, owner: str | None = None, limit: int = 100, after: str | None = None) -> wire.WorkspacePage:
        query = {key: value for key, value in {"owner": owner, "limit": limit, "after": after}.items() if value}
        return self.call("GET", f"/v1/workspaces?{urlencode(query)}")

    def workspace(self, name: str) -> wire.WorkspaceView:
        return self.call("GET", f"/v1/workspaces/{quote(name)}")

    def project(self, name: str) -> wire.ProjectSummary:
        """The workspace's spec text, lock hash and base digest."""
        return self.call("GET", f"/v1/workspaces/{quote(name)}/project")

    def lock_text(self, name: str) -> str | None:
        return self.call("GET", f"/v1/workspaces/{quote(name)}/lock")["lock"]

    def up(
        self, project: dict[str, Any], *, name: str | None = None, on: str | None = None
    ) -> Stream[wire.ChangeFrame]:
        return self.lines("POST", "/v1/workspaces", {**project, "name": name, "on": on})

    def up_from_snapshot(self, snapshot_id: str, *, name: str | None = None) -> Stream[wire.ChangeFrame]:
        return self.lines("POST", f"/v1/snapshots/{quote(snapshot_id)}/up", {"name": name})

    def status(self, name: str) -> wire.WorkspaceStatus:
        """Pins, secrets, the clone (branch, commit, dirty) and the data's last pull."""
        return self.call("GET", f"/v1/workspaces/{quote(name)}/status")

    def data_pull(self, name: str) -> Stream[wire.ChangeFrame]:
        """Progress frames ({"event": ...}), then {"setup": ...} or {"error": ...}."""
        return self.lines("POST", f"/v1/workspaces/{quote(name)}/data/pull")

    def snapshot(self, name: str, *, note: str | None = None) -> wire.SnapshotView:
        return self.call("POST", f"/v1/workspaces/{quote(name)}/snapshots", {"note": note})

    def snapshots(self, workspace: str | None = None) -> list[wire.SnapshotView]:
        query = f"?workspace={quote(workspace)}" if workspace else ""
        return self.call("GET", f"/v1/snapshots{query}")["items"]

    def snapshot_record(self, snapshot_id: str) -> wire.SnapshotView:
        return self.call("GET", f"/v1/snapshots/{quote(snapshot_id)}")

    def stop(self, name: str) -> Stream[wire.ChangeFrame]:
        return self.lines("POST", f"/v1/workspaces/{quote(name)}/stop")

    def start(self, name: str) -> Stream[wire.ChangeFrame]:
        return self.lines("POST", f"/v1/workspaces/{quote(name)}/start")

    def rebuild(self, name: str, project: dict[str, Any] | None) -> Stream[wire.ChangeFrame]:
        return self.lines("POST", f"/v1/workspaces/{quote(name)}/rebuild", {"project": project})

    def lock_project(self, project: dict[str, Any], *, on: str | None, upgrade: bool) -> Stream[wire.WorkFrame]:
        return self.lines("POST", "/v1/projects/lock", {**project, "on": on, "upgrade": upgrade})

    def build_project(self, project: dict[str, Any], *, on: str | None, no_cache: bool) -> Stream[wire.WorkFrame]:
        return self.lines("POST", "/v1/projects/build", {**project, "on": on, "no_cache": no_cache})

    def run_project(
        self, project: dict[str, Any], argv: list[str], *, on: str | None, network: bool
    ) -> Stream[wire.WorkFrame]:
        return self.lines("POST", "/v1/projects/run", {**project, "argv": argv, "on": on, "network": network})

    def remove(self, name: str, *, keep_volume: bool = False) -> Stream[wire.ChangeFrame]:
        flag = "true" if keep_volume else "false"
        return self.lines("DELETE", f"/v1/workspaces/{quote(name)}?keep_volume={flag}")

    def exec(self, name: str, argv: list[str], *, user: str = "dev") -> Iterator[tuple[str, bytes | int]]:
        """("stdout"|"stderr", bytes) chunks, then ("exit", code)."""
        for frame in self.lines("POST", f"/v1/workspaces/{quote(name)}/exec", {"argv": argv, "user": user}):
            if "error" in frame:
                raise error_from_payload(frame["error"])
            for key, value in frame.items():
                yield (key, value) if key == "exit" else (key, base64.b64decode(value))

    def ssh_certificate(self, name: str, public_key: str) -> wire.SshCertificate:
        return self.call("POST", f"/v1/workspaces/{quote(name)}/ssh/certificate", {"public_key": public_key})

    def access(self, name: str, *, ended: bool = False) -> wire.AccessList:
        return self.call("GET", f"/v1/workspaces/{quote(name)}/access?ended={'true' if ended else 'false'}")

    def grant(
        self, name: str, person: str, *, ssh: bool, jupyter: bool, ttl: str | None = None, share_secrets: bool = False
    ) -> wire.GrantView:
        body = {"person": person, "ssh": ssh, "jupyter": jupyter, "ttl": ttl, "share_secrets": share_secrets}
        return self.call("POST", f"/v1/workspaces/{quote(name)}/access", body)

    def revoke(self, name: str, person: str) -> wire.GrantView:
        return self.call("DELETE", f"/v1/workspaces/{quote(name)}/access/{quote(person)}")

    def jupyter_login(self, name: str) -> wire.JupyterLink:
        return self.call("POST", f"/v1/workspaces/{quote(name)}/jupyter/login")

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Stream[bytes]:
        """Container output; followed, it has no heartbeat, so it waits without a timeout."""
        query = urlencode({"follow": "true" if follow else "false", **({"tail": tail} if tail is not None else {})})
        return self.chunks(f"/v1/workspaces/{quote(name)}/logs?{query}", timeout=None if follow else STREAM_TIMEOUT)

    def events(self, workspace: str | None = None, *, limit: int = 200) -> list[wire.EventView]:
        query = urlencode({"limit": limit, **({"workspace": workspace} if workspace else {})})
        return self.call("GET", f"/v1/events?{query}")["items"]

    def follow_events(self, workspace: str | None = None) -> Stream[wire.EventView]:
        query = urlencode({"workspace": workspace} if workspace else {})
        return self.lines("GET", f"/v1/events/follow?{query}")

    def secrets(self) -> list[wire.SecretView]:
        """The caller's own secrets and the team's: names, scope, who set them and when (never values)."""
        return self.call("GET", "/v1/secrets")["items"]

    def set_secret(self, name: str, value: str, *, team: bool = False) -> wire.SecretView:
        return self.call("PUT", f"/v1/secrets/{quote(name, safe='')}", {"value": value, "team": team})

    def remove_secret(self, name: str, *, team: bool = False) -> wire.Removed:
        return self.call("DELETE", f"/v1/secrets/{quote(name, safe='')}?team={'true' if team else 'false'}")

    def dotfiles(self) -> wire.DotfilesView:
        """The caller's dotfiles repository: {"url", "install"} (url None when unset)."""
        return self.call("GET", "/v1/dotfiles")

    def set_dotfiles(self, url: str, *, install: str | None = None) -> wire.DotfilesView:
        return self.call("PUT", "/v1/dotfiles", {"url": url, "install": install})

    def remove_dotfiles(self) -> wire.DotfilesRemoved:
        return self.call("DELETE", "/v1/dotfiles")

    def hosts(self, *, probe: bool = True) -> list[wire.HostView]:
        """Every backend with its facts (reachability, Docker version, GPUs, free disk), probed now."""
        return self.call("GET", f"/v1/hosts?probe={'true' if probe else 'false'}", timeout=HOST_PROBE_TIMEOUT)["items"]

    def add_host(self, name: str, url: str, identity: str, *, trust: str | None = None) -> wire.HostAdded:
        return self.call(
            "POST",
            "/v1/hosts",
            {"name": name, "url": url, "identity": identity, "trust": trust},
            timeout=HOST_PROBE_TIMEOUT,
        )

    def remove_host(self, name: str) -> wire.Removed:
        return self.call("DELETE", f"/v1/hosts/{quote(name, safe='')}")

    def offers(
        self,
        *,
        gpu: str | None = None,
        spot: bool = False,
        regions: list[str] | None = None,
        max_price: float | None = None,
        limit: int = 20,
    ) -> wire.OfferList:
        query: list[tuple[str, str]] = [("spot", "true" if spot else "false"), ("limit", str(limit))]
        query += [("gpu", gpu)] if gpu else []
        query += [("region", region) for region in regions or []]
        query += [("max_price", str(max_price))] if max_price is not None else []
        return self.call("GET", f"/v1/offers?{urlencode(query)}")

    def refresh_offers(self) -> wire.OffersRefreshed:
        return self.call("POST", "/v1/offers/refresh", timeout=HOST_PROBE_TIMEOUT)

    def put_code(self, source: Any, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """A project folder's tar (a path or a binary file) as a raw body: {hash, files, bytes} (devenv/code)."""
        from devenv.code.client import put_code

        return put_code(self, source, progress)

    def sync(self, name: str, code: dict[str, Any], *, force: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """Push uploaded code (`code`: {hash, source}) into the workspace; CodeConflict names edits made there."""
        from devenv.code.client import sync

        return sync(self, name, code, force=force, dry_run=dry_run)

    def shutdown(self) -> None:
        self.call("POST", "/v1/daemon/shutdown")


def start_daemon(*, wait: float = 20.0) -> None:
    """Start a local devenvd in the background (its output goes to the daemon log) and wait for it."""
    log_path = paths.daemon_log_path()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devenv.daemon.process.main"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    probe = Client(Target(socket=str(paths.socket_path())), autostart=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            probe.health()
            return
        except DaemonUnreachable:
            pass
        code = process.poll()
        if code not in (None, 0):  # 0: another daemon won the race to start; wait for that one
            break
        time.sleep(0.05)
    tail = log_path.read_text(errors="replace").splitlines()[-5:]
    raise DaemonUnreachable(
        "the devenv daemon did not start" + ("; its log ends:\n  " + "\n  ".join(tail) if tail else ""),
        hint=f"see {log_path}",
    )
