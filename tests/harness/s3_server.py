"""A real S3-compatible HTTP endpoint for tests (moto's server, in this process), for DVC's S3 remotes.

Moto keeps its buckets in process-global state, shared by every S3Server of this process: name buckets
uniquely per test. Bind it to `engine_host_address()` and hand out `endpoint(ENGINE_HOST_NAME)` to reach
it from a container (moto treats `host.docker.internal` as path-style, like an IP address).
"""

from __future__ import annotations

import socket
from typing import Any

# Moto accepts any credentials; these fixed fake ones keep every client (boto3, dvc, a container) alike.
AWS_ACCESS_KEY_ID = "devenv-test-access-key"
AWS_SECRET_ACCESS_KEY = "devenv-test-secret-key"
AWS_REGION = "us-east-1"
CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
    "AWS_DEFAULT_REGION": AWS_REGION,
}


class S3Server:
    """Moto's ThreadedMotoServer on `host` at an ephemeral port, for the length of a `with` block."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._server: Any = None
        self._port: int | None = None

    def __enter__(self) -> S3Server:
        from moto.server import ThreadedMotoServer  # moto[server] is a test extra; import it when used

        # ThreadedMotoServer.start() waits forever when its bind fails: find out here instead
        with socket.socket() as probe:
            probe.bind((self.host, 0))
        self._server = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self._server.start()
        self._port = int(self._server.get_host_and_port()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = self._port = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the S3 server is not running (use it as a context manager)")
        return self._port

    def endpoint(self, host: str | None = None) -> str:
        """The endpoint URL; `host` replaces the bind address (e.g. host.docker.internal in a container)."""
        return f"http://{host or self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The fake credentials and region as environment variables (for dvc, boto3, a container)."""
        return dict(CREDENTIALS_ENV)

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint with the fake credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint(),
            region_name=AWS_REGION,
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
        )

    def create_bucket(self, name: str) -> str:
        """Create `name` (in us-east-1, so no location constraint); returns its `s3://` URL."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"
