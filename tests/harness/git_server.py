"""A real git server for tests: `git http-backend` (smart HTTP) behind HTTP Basic auth, plus repo makers.

Workspaces clone their project with a credential helper that reads a token; this server asks for one the
way GitHub does (401 + `WWW-Authenticate: Basic`), so the whole path is real: git, curl, the helper, CGI.
Bind it to `engine_host_address()` and hand out `url(name, host=ENGINE_HOST_NAME)` to reach it from a
container.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import io
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
# Fixed identity and dates: the same files and message always make the same commit sha.
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "Devenv Tests",
    "GIT_AUTHOR_EMAIL": "tests@devenv.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "Devenv Tests",
    "GIT_COMMITTER_EMAIL": "tests@devenv.invalid",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the user's or the system's git config, so results don't vary."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    env.update(COMMIT_ENV, **(extra or {}))
    return env


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run real git in `cwd`; its stdout, stripped. Fails with git's stderr in the message."""
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(env), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}) in {cwd}:\n{done.stderr}")
    return done.stdout.strip()


def _write_files(work: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def make_repo(work: Path, bare_root: Path, name: str, files: dict[str, bytes], message: str = "initial") -> str:
    """A work repo at `work` with `files` committed on `main`, and its bare copy `bare_root/name.git`
    (which the work repo has as `origin`); returns the commit sha."""
    work.mkdir(parents=True, exist_ok=True)
    git(work, "init", "--quiet", "--initial-branch=main")
    _write_files(work, files)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "--message", message)
    bare = bare_root / f"{name}.git"
    bare_root.mkdir(parents=True, exist_ok=True)
    git(bare_root, "clone", "--quiet", "--bare", str(work), str(bare))
    git(work, "remote", "add", "origin", str(bare))
    return git(work, "rev-parse", "HEAD")


def commit_files(work: Path, files: dict[str, bytes], message: str = "update") -> str:
    """Commit `files` (added or changed) in a repo from make_repo and push it to its bare copy; the new sha."""
    _write_files(work, files)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "--allow-empty", "--message", message)
    git(work, "push", "--quiet", "origin", "HEAD")
    return git(work, "rev-parse", "HEAD")


@dataclass(frozen=True)
class GitRequest:
    """One request the server saw; `authorized` when it carried the right username and token; how its body
    came (`Content-Encoding`, chunked or not), to show that tests covered gzip and streamed bodies."""

    method: str
    path: str
    authorized: bool
    content_encoding: str = ""
    chunked: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # for `Expect: 100-continue`; each response still closes its connection
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `requests` instead."""

    def _serve(self) -> None:
        self.close_connection = True
        owner = self.server.owner
        authorized = owner.check(self.headers.get("Authorization"))
        owner.record(
            GitRequest(
                self.command,
                self.path,
                authorized,
                self.headers.get("Content-Encoding", ""),
                self.headers.get("Transfer-Encoding", "").lower() == "chunked",
            )
        )
        if not authorized:
            body = b"authentication required\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Basic realm="{owner.realm}"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            return
        self._cgi(owner)

    def _cgi_env(self, owner: GitHttpServer) -> dict[str, str]:
        url = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": owner.username,
            "REMOTE_ADDR": self.client_address[0],
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(url.path),
            "QUERY_STRING": url.query,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            # push is on for every repo, and repos made by another uid (a container's) are still served
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GIT_CONFIG_KEY_1": "safe.directory",
            "GIT_CONFIG_VALUE_1": "*",
        }
        headers = {
            "Content-Type": "CONTENT_TYPE",
            "Content-Length": "CONTENT_LENGTH",
            # http-backend inflates gzip request bodies itself when told the encoding
            "Content-Encoding": "HTTP_CONTENT_ENCODING",
            "Git-Protocol": "GIT_PROTOCOL",
        }
        for header, name in headers.items():
            if (value := self.headers.get(header)) is not None:
                env[name] = value
        if "GIT_PROTOCOL" in env:
            env["HTTP_GIT_PROTOCOL"] = env["GIT_PROTOCOL"]
        return env

    def _cgi(self, owner: GitHttpServer) -> None:
        process = subprocess.Popen(
            ["git", "http-backend"],
            env=self._cgi_env(owner),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin and process.stderr
        assert isinstance(process.stdout, io.BufferedReader)  # bufsize -1 (the default): read1 streams the body
        errors: list[bytes] = []
        stderr = process.stderr
        feeder = threading.Thread(target=self._feed, args=(process.stdin,), daemon=True)
        drainer = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
        feeder.start()
        drainer.start()
        try:
            status, headers = _cgi_headers(process.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")  # the body ends when the connection does
            self.end_headers()
            while chunk := process.stdout.read1(CHUNK):
                self.wfile.write(chunk)
        finally:
            process.stdout.close()
            feeder.join(timeout=60)
            drainer.join(timeout=60)
            if process.wait(timeout=60) != 0 or any(errors):
                owner.record_error(b"".join(errors).decode(errors="replace"))

    def _feed(self, sink: IO[bytes]) -> None:
        """The request body into the CGI's stdin, streamed; chunked bodies are de-chunked (then EOF ends it)."""
        try:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                for chunk in _chunks(self.rfile):
                    sink.write(chunk)
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left > 0 and (chunk := self.rfile.read(min(left, CHUNK))):
                    sink.write(chunk)
                    left -= len(chunk)
        except (BrokenPipeError, ConnectionError, ValueError):
            pass  # the backend stopped reading (an error it reports) or the client went away
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()


def _chunks(stream: io.BufferedIOBase) -> Iterator[bytes]:
    """The data of an HTTP/1.1 chunked body, piece by piece (trailers are read and dropped)."""
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline().strip():
                pass
            return
        left = size
        while left > 0:
            piece = stream.read(min(left, CHUNK))
            if not piece:
                raise ConnectionError("chunked body ended early")
            left -= len(piece)
            yield piece
        stream.readline()  # the CRLF after each chunk


def _cgi_headers(stdout: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    """The CGI response's status (from `Status:`, 200 without one) and its other headers."""
    status, headers = 200, []
    while line := stdout.readline():
        line = line.rstrip(b"\r\n")
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: GitHttpServer


class GitHttpServer:
    """Serves the bare repos under `root` (`name.git`) over smart HTTP, to `username` with `token` only.

    Use as a context manager; it listens on `host` at an ephemeral port until the block ends.
    """

    def __init__(
        self, root: Path, *, username: str, token: str, host: str = "127.0.0.1", realm: str = "devenv-tests"
    ) -> None:
        if shutil.which("git") is None:
            raise RuntimeError("git is not installed on this host")
        self.root = root.resolve()
        self.username = username
        self.token = token
        self.host = host
        self.realm = realm
        self.requests: list[GitRequest] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GitHttpServer:
        self._server = _Server((self.host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True, name=f"git server on {self.host}"
        )  # polls: shutdown waits one poll
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the git server is not running (use it as a context manager)")
        return int(self._server.server_address[1])

    def url(self, repo_name: str, host: str | None = None) -> str:
        """The clone URL of `repo_name` (no `.git`); `host` replaces the bind address (e.g. for containers)."""
        return f"http://{host or self.host}:{self.port}/{repo_name}.git"

    def check(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries Basic `username:token` (compared in constant time)."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
            secret.encode(), self.token.encode()
        )

    def record(self, request: GitRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def record_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    @property
    def authorized_requests(self) -> int:
        """How many requests carried the right credential."""
        with self._lock:
            return sum(request.authorized for request in self.requests)
