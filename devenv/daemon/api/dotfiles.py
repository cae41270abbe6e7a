"""/v1/dotfiles: the caller's own dotfiles repository. Each person sees and changes only theirs.

No `from __future__ import annotations` here: the routes' types name the caller dependency handed to
`dotfiles_router`, a local, which FastAPI could not find if annotations were strings.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from devenv import wire
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.services.access import Caller
from devenv.daemon.services.dotfiles import DotfilesService
from devenv.daemon.services.events import EventLog


class DotfilesBody(BaseModel):
    url: str = Field(description="the repository's clone URL: https (public), http, ssh, git, or git@host:path")
    install: str | None = Field(
        default=None,
        description="its install script, relative to the repository's top; "
        "default: the first of install.sh, install, bootstrap.sh, "
        "... found",
    )


def dotfiles_router(
    sessions: sessionmaker[Session], events: EventLog, caller: Callable[..., Caller | Awaitable[Caller]]
) -> APIRouter:
    """The dotfiles routes, behind the same caller check (`caller`) as the rest of /v1."""
    service = DotfilesService(sessions, events)
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["dotfiles"])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.get("/dotfiles", response_model=wire.DotfilesView, **allow(Rule.MEMBER))
    def show_dotfiles(actor: actor_type) -> dict[str, Any]:
        """The caller's dotfiles repository: url (None when unset), install, updated_at, note."""
        return service.get(actor)

    @router.put("/dotfiles", response_model=wire.DotfilesView, **allow(Rule.MEMBER))
    def set_dotfiles(body: DotfilesBody, actor: actor_type) -> dict[str, Any]:
        """Set the caller's dotfiles repository; cloned into their workspaces' homes on their next start."""
        return service.set(actor, body.url, body.install)

    @router.delete("/dotfiles", response_model=wire.DotfilesRemoved, **allow(Rule.MEMBER))
    def remove_dotfiles(actor: actor_type) -> dict[str, Any]:
        """Forget the caller's dotfiles repository (clones already in homes stay)."""
        return service.remove(actor)

    return router
