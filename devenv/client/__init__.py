"""The one client of the daemon API, used by the CLI and the TUI alike.

Standard library only (http.client); its answers are typed by the wire models (devenv/wire.py,
TypedDicts, imported for type checking only). It is imported on every `devenv` command, and a command
like `devenv ls` should cost little more than the round trip. Errors the daemon answers come back
as the same DevenvError classes it raised (codes round-trip); a local daemon that does not answer
is started on demand.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from devenv.client.local import restart_if_another_build, start_daemon
from devenv.client.transport import (
    CALL_TIMEOUT,
    STREAM_TIMEOUT,
    Stream,
    Target,
    UnixConnection,
    default_target,
    parse_target,
)
from devenv.errors import DaemonUnreachable, DevenvError, UsageError, error_from_payload

if TYPE_CHECKING:  # the answers' types (devenv/wire.py): annotations only, nothing more to import at run time
    from devenv import wire

HOST_PROBE_TIMEOUT = 90.0  # a host that does not answer takes its connect timeout, then the probe goes on

__all__ = ["Client", "Stream", "Target", "default_target", "parse_target", "start_daemon"]


class Client:
    def __init__(self, target: Target | None = None, *, autostart: bool = True) -> None:
        self.target = target or default_target()
        self.autostart = autostart and self.target.local
        self._build_checked = not self.autostart

    # -- transport -----------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.target.socket:
            return UnixConnection(self.target.socket, timeout)
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
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                connection.close()
                if self.autostart and attempt == 1:
                    start_daemon()
                    continue
                raise self._unreachable(exc) from exc
            except OSError as exc:
                connection.close()
                raise self._unreachable(exc) from exc
            if not self._build_checked:
                self._build_checked = True
                connection.close()
                restart_if_another_build(self)
                return self.connected(timeout)
            return connection
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

    def verify_project(self, project: dict[str, Any], *, on: str | None) -> Stream[wire.WorkFrame]:
        return self.lines("POST", "/v1/projects/verify", {**project, "on": on})

    def bases(self, *, on: str | None) -> wire.BaseList:
        return self.call("GET", "/v1/images" + (f"?{urlencode({'on': on})}" if on else ""))

    def bootstrap(self, recipe: str, *, on: str | None, force: bool) -> Stream[wire.WorkFrame]:
        query = urlencode({**({"on": on} if on else {}), "force": "true" if force else "false"})
        return self.lines("POST", f"/v1/images/{quote(recipe)}/bootstrap?{query}")

    def run_project(
        self, project: dict[str, Any], argv: list[str], *, on: str | None, network: bool
    ) -> Stream[wire.WorkFrame]:
        return self.lines("POST", "/v1/projects/run", {**project, "argv": argv, "on": on, "network": network})

    def promote_project(
        self,
        project: dict[str, Any],
        code: str,
        facts: dict[str, Any],
        *,
        tag: str | None,
        push: bool,
        auth: dict[str, str] | None,
        on: str | None,
    ) -> Stream[wire.WorkFrame]:
        """The production image of the commit uploaded as `code` (its git archive); `facts` as git gave them."""
        body = {**project, **facts, "code": code, "tag": tag, "push": push, "auth": auth, "on": on}
        return self.lines("POST", "/v1/projects/promote", body)

    def ci_project(self, project: dict[str, Any], code: str, *, on: str | None) -> Stream[wire.WorkFrame]:
        """`ci.test` in the project's image, in its folder uploaded as `code` (put_code's hash)."""
        return self.lines("POST", "/v1/projects/ci", {**project, "code": code, "on": on})

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
