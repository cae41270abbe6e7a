"""The Docker SDK, imported here and nowhere else in devenv (a test checks): one place to read which parts of
it devenv stands on, to pin or replace it, and to see which of its exceptions exist. Everything else imports
these names from here; its exceptions become devenv errors only in `devenv.engine.errors`."""

from __future__ import annotations

from docker import APIClient, DockerClient
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter
from docker.types import DeviceRequest, IPAMConfig, IPAMPool, Mount, Ulimit
from docker.utils import parse_repository_tag
from requests.exceptions import RequestException  # what the SDK's HTTP layer raises beside its own

__all__ = [
    "APIClient",
    "APIError",
    "DeviceRequest",
    "DockerClient",
    "DockerException",
    "IPAMConfig",
    "IPAMPool",
    "ImageNotFound",
    "Mount",
    "NotFound",
    "RequestException",
    "SSHConnectionPool",
    "SSHHTTPAdapter",
    "Ulimit",
    "parse_repository_tag",
]
