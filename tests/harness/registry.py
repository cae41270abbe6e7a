"""A real container registry for tests: Debian's `docker-registry` (distribution v2) on 127.0.0.1.

No registry on the internet can be reached from the test machines, so pushes and pulls go to this one.
Docker treats 127.0.0.0/8 as an insecure-allowed registry by default: plain http works, no TLS, no
daemon.json change. With `username`/`password` it asks for basic auth (htpasswd, bcrypt hashes only).

Docker-py does not raise when a push fails: the error arrives as an `{"error": ...}` entry in the
push stream. Use `push_errors` (or check the stream yourself) rather than trusting a clean return.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def registry_unreachable_host() -> str:
    """ "127.0.0.1:PORT" of a port nothing listens on (bound, then closed): pushes and pulls there fail fast."""
    return f"127.0.0.1:{_free_port()}"


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd entry. Distribution reads bcrypt only (`$2y$`/`$2b$`); not MD5, SHA1 or crypt."""
    import bcrypt  # paramiko's dependency; only an authenticated registry needs it

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()  # low cost: tests only
    return f"{username}:{hashed}\n"


def push_errors(stream: Iterable[dict[str, Any]]) -> list[str]:
    """The `error` messages of a decoded docker-py push (or pull) stream, consuming it."""
    return [
        str(entry.get("error") or entry.get("errorDetail", {}).get("message"))
        for entry in stream
        if "error" in entry or "errorDetail" in entry
    ]


class Registry:
    """`docker-registry serve` on 127.0.0.1 at an ephemeral port, storing under `root`, for a `with` block."""

    START_TIMEOUT = 30.0

    def __init__(self, root: Path, *, username: str | None = None, password: str | None = None) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.root = Path(root)
        self.username = username
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def _config(self, port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            # no `debug` key: that would open a second (debug/metrics) listener
            "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.username is not None and self.password is not None:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(htpasswd_line(self.username, self.password))
            config["auth"] = {"htpasswd": {"realm": "devenv-test", "path": str(htpasswd)}}
        return config

    def __enter__(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(3):  # the port was free when probed; another process may take it before we bind
            port = _free_port()
            config = self.root / "config.yml"
            config.write_text(yaml.safe_dump(self._config(port)))
            with (self.root / "registry.log").open("wb") as log:
                process = subprocess.Popen(
                    [REGISTRY_BINARY, "serve", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self._process, self._port = process, port
            if self._wait_ready(process):
                return self
            last = self.log_tail()
            self._stop()
        raise RuntimeError(f"docker-registry did not start; its log ends:\n{last}")

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        """Until GET /v2/ answers: 200 open, 401 with auth (the challenge proves the auth layer is up)."""
        ready = {200, 401} if self.username is not None else {200}
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in ready:
                    return True
            time.sleep(0.1)
        return False

    def _stop(self) -> None:
        process, self._process, self._port = self._process, None, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the registry's own output (warnings and errors), for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "registry.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- addresses -----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the registry is not running (use it as a context manager)")
        return self._port

    @property
    def host(self) -> str:
        """ "127.0.0.1:PORT": the registry part of an image reference (`f"{host}/team/image:tag"`)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage(self) -> Path:
        """The filesystem driver's root directory (blobs live under docker/registry/v2/blobs)."""
        return self.root / "data"

    @property
    def auth_config(self) -> dict[str, str] | None:
        """For docker-py's `push`/`pull(..., auth_config=...)`; None for an open registry."""
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password}

    # -- the HTTP API (repository: "team/image", or "HOST/team/image" as pushed) ----------------------------

    def _name(self, repository: str) -> str:
        """The repository path in the registry; a full `HOST/team/image` reference is accepted too."""
        return repository.removeprefix(f"{self.host}/")

    def _get(self, path: str, **headers: str) -> httpx.Response:
        auth = (self.username, self.password) if self.username is not None and self.password is not None else None
        response = httpx.get(f"{self.url}/v2/{path}", headers=headers, auth=auth, timeout=30)
        response.raise_for_status()
        return response

    def _manifest_response(self, repository: str, reference: str) -> httpx.Response:
        return self._get(f"{self._name(repository)}/manifests/{reference}", accept=", ".join(MANIFEST_TYPES))

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        """The manifest (or index) stored for a tag or digest; httpx.HTTPStatusError (404) when none."""
        return dict(self._manifest_response(repository, reference).json())

    def manifest_digest(self, repository: str, reference: str) -> str:
        """ "sha256:..." from Docker-Content-Digest: the digest a push reports and `repo@digest` pulls by."""
        response = self._manifest_response(repository, reference)
        computed = f"sha256:{hashlib.sha256(response.content).hexdigest()}"
        return str(response.headers.get("Docker-Content-Digest") or computed)

    def blob_sizes(self, repository: str, reference: str) -> dict[str, int]:
        """{layer digest: compressed size} from an image manifest (not an index: pick a platform first)."""
        manifest = self.manifest(repository, reference)
        if "layers" not in manifest:
            raise ValueError(f"{repository}:{reference} is an index or list, not an image manifest")
        return {layer["digest"]: int(layer["size"]) for layer in manifest["layers"]}

    def tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted; [] for a repository the registry has never seen."""
        try:
            listed = self._get(f"{self._name(repository)}/tags/list").json()
        except httpx.HTTPStatusError as error:
            if error.response.status_code == 404:
                return []
            raise
        return sorted(listed.get("tags") or [])

    def stored_blobs(self) -> dict[str, int]:
        """{digest: size} of every blob on disk (layers, configs, manifests): diff two calls to measure a push."""
        blobs = self.storage / "docker" / "registry" / "v2" / "blobs"
        found: dict[str, int] = {}
        for data in blobs.glob("*/*/*/data"):
            algorithm, digest = data.parent.parent.parent.name, data.parent.name
            found[f"{algorithm}:{digest}"] = data.stat().st_size
        return found
