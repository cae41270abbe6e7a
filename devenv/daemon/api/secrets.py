"""/v1/secrets: the caller's own secrets and the team's. Values go in and never come back out.

No `from __future__ import annotations` here: the routes' types name the caller dependency handed to
`secret_router`, a local, which FastAPI could not find if annotations were strings.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from devenv import wire
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.services.access import Caller
from devenv.daemon.services.secrets import Secrets


class SecretBody(BaseModel):
    value: str = Field(description="the value: text, at most 64 KiB; never answered back")
    team: bool = Field(default=False, description="a team secret (admins only) instead of the caller's own")


def secret_router(secrets: Secrets, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    """The secret routes, behind the same caller check (`caller`) as the rest of /v1."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["secrets"])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.get("/secrets", response_model=wire.SecretList, **allow(Rule.MEMBER))
    def list_secrets(actor: actor_type) -> dict[str, Any]:
        """The caller's own secrets and the team's: names, scope, who set them and when; never values."""
        return {"items": secrets.list(actor)}

    # a team secret: an admin's (checked by Secrets)
    @router.put("/secrets/{name}", response_model=wire.SecretView, **allow(Rule.MEMBER))
    def set_secret(name: str, body: SecretBody, actor: actor_type) -> dict[str, Any]:
        return secrets.set(actor, name, body.value, team=body.team)

    @router.delete("/secrets/{name}", response_model=wire.Removed, **allow(Rule.MEMBER))
    def remove_secret(name: str, actor: actor_type, team: bool = False) -> dict[str, str]:
        secrets.remove(actor, name, team=team)
        return {"removed": name}

    return router
