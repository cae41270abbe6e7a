"""/v1/hosts: Docker hosts over SSH. Anyone may list them; adding and removing is an admin's.

No `from __future__ import annotations` here: FastAPI must see the caller dependency's real type.
"""

import copy
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from devenv import wire
from devenv.daemon.api.authz import Rule, Visibility, allow
from devenv.daemon.services.access import Caller
from devenv.daemon.services.hosts import Hosts


class HostBody(BaseModel):
    name: str = Field(description="the host's name for `--on` and `backend:`")
    url: str = Field(description="ssh://USER@HOST[:PORT]")
    identity: str = Field(description="the private key the daemon logs in with (kept encrypted, never answered back)")
    trust: str | None = Field(
        default=None, description="the host key's SHA256 fingerprint, confirmed by a person on first contact"
    )


OTHERS = "(another person's)"


def _redacted(row: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """A host row with the names of workspaces that are not the caller's to see replaced."""
    row = copy.deepcopy(row)
    if row.get("workspace") and row["workspace"] not in names:
        row["workspace"], row["name"] = OTHERS, f"{row.get('kind', 'instance')}:{OTHERS}"
    for gpu in (row.get("facts") or {}).get("gpus") or ():
        if gpu.get("workspace") and gpu["workspace"] not in names:
            gpu["workspace"] = OTHERS
    return row


def host_router(hosts: Hosts, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["hosts"])
    actor_type = Annotated[Caller, Depends(caller)]
    visibility = Visibility(hosts.sessions)

    @router.get("/hosts", response_model=wire.HostList, **allow(Rule.MEMBER))
    def list_hosts(actor: actor_type, probe: bool = True) -> dict[str, Any]:
        """Every backend: reachability, Docker version, GPUs and who holds them, free disk (probed now).
        A member sees that a GPU or an instance is taken, but names only the workspaces they may see."""
        rows = hosts.list(probe=probe)
        if not actor.admin:
            rows = [_redacted(row, visibility.workspaces(actor.name)) for row in rows]
        return {"items": rows}

    @router.post("/hosts", response_model=wire.HostAdded, **allow(Rule.ADMIN))
    def add_host(body: HostBody, actor: actor_type) -> dict[str, Any]:
        return hosts.add(actor, body.name, body.url, body.identity, trust=body.trust)

    @router.delete("/hosts/{name}", response_model=wire.Removed, **allow(Rule.ADMIN))
    def remove_host(name: str, actor: actor_type) -> dict[str, Any]:
        return hosts.remove(actor, name)

    return router
