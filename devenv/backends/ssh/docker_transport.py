"""Docker SDK calls over an SshSession: the SDK's own ssh transport (a `docker system dial-stdio`
channel per HTTP connection), on a connection whose host key devenv verified.

The SDK's SSHHTTPAdapter would make its own paramiko client from ~/.ssh/config and reconnect only
by chance; this adapter hands its pools devenv's session and makes a new pool when the session had
to reconnect (the host went away and came back), so calls after an outage just work.
"""

from __future__ import annotations

from typing import Any, cast

from urllib3._collections import RecentlyUsedContainer

from devenv.backends.ssh.session import SshSession
from devenv.engine.sdk import DockerClient, SSHConnectionPool, SSHHTTPAdapter

SSH_BASE_URL = "http+docker://ssh"  # the SDK reads raw sockets (exec stdin, attach) as paramiko channels here


class _Pool(SSHConnectionPool):
    """A pool of channels on one connection of the session: `generation` names which."""

    generation: int


class SessionAdapter(SSHHTTPAdapter):
    def __init__(self, session: SshSession, *, timeout: int, max_pool_size: int) -> None:
        self.session = session
        super().__init__(session.url, timeout=timeout, max_pool_size=max_pool_size)

    def _create_paramiko_client(self, base_url: str) -> None:
        # the SDK only calls get_transport() on its client: the session has it
        self.ssh_client = self.session  # type: ignore[assignment]
        self.ssh_params: dict[str, Any] = {}

    def _connect(self) -> None:
        """Not at construction: nothing touches the host until a call is made."""

    def get_connection(self, url: str | bytes, proxies: Any = None) -> SSHConnectionPool:
        self.session.transport()  # (re)connects, verifying the host, before a pool hands out a channel
        generation = self.session.generation
        # types-docker declares `pools` an int; the SDK makes it urllib3's RecentlyUsedContainer
        pools = cast(RecentlyUsedContainer[str | bytes, SSHConnectionPool], self.pools)
        with pools.lock:
            pool = pools.get(url)
            if isinstance(pool, _Pool) and pool.generation == generation:
                return pool
            # the SDK only calls get_transport() on its client: the session has it
            pool = _Pool(
                ssh_client=self.session,  # type: ignore[arg-type]
                timeout=self.timeout,
                maxsize=self.max_pool_size,
                host=self.ssh_host,
            )
            pool.generation = generation
            pools[url] = pool  # a pool of channels on a dead connection is closed as it is replaced
        return pool

    def close(self) -> None:
        super(SSHHTTPAdapter, self).close()  # the session is its owner's to close


def docker_client(session: SshSession, *, version: str, timeout: int) -> DockerClient:
    """A DockerClient whose every call goes through `session`."""
    client = DockerClient(base_url="tcp://127.0.0.1:9", version=version, timeout=timeout)  # nothing dialled
    adapter = SessionAdapter(session, timeout=timeout, max_pool_size=8)
    api = client.api
    api._custom_adapter = adapter  # type: ignore[attr-defined]  # the SDK's own (private) slot, not in types-docker
    api.mount(SSH_BASE_URL, adapter)
    api.base_url = SSH_BASE_URL
    return client
