"""/v1/images: `devenv images ls` and `bootstrap`, the base images on a backend's engine.

No `from __future__ import annotations` here: FastAPI must see the caller dependency's real type.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from devenv import wire
from devenv.build.base import load_recipe
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.api.streams import NDJSON
from devenv.daemon.api.work_stream import Channel, work_frames
from devenv.daemon.services.access import Caller
from devenv.daemon.services.project_work import ProjectWork
from devenv.errors import UsageError
from devenv.lock.models import BaseImage


def image_router(work: ProjectWork, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["images"])

    @router.get("/images", response_model=wire.BaseList, **allow(Rule.MEMBER))
    def list_bases(on: str | None = None) -> dict[str, Any]:
        """`devenv images ls`: each base recipe and its image on a backend's engine (default: local)."""
        return {
            "items": [
                _base_view(name, work.base(name, on, make=False, force=False, progress=None)) for name in work.recipes()
            ]
        }

    @router.post("/images/{recipe}/bootstrap", **allow(Rule.MEMBER))
    def bootstrap(recipe: str, on: str | None = None, force: bool = False) -> StreamingResponse:
        """`devenv images bootstrap`: the base made on a backend's engine (the pinned upstream, else Debian's
        packages) unless it is there (`force`: again); the stream's last line is `base`."""
        if recipe not in work.recipes():
            raise UsageError(f"no base recipe named {recipe!r}", hint=f"choose one of: {', '.join(work.recipes())}")

        def make(channel: Channel) -> wire.WorkFrame:
            made = work.base(recipe, on, make=True, force=force, progress=channel.progress)
            return {"base": _base_view(recipe, made)}

        return StreamingResponse(work_frames(make), media_type=NDJSON)

    return router


def _base_view(recipe: str, made: BaseImage | None) -> wire.BaseView:
    loaded = load_recipe(recipe)
    return {
        "recipe": recipe,
        "python": loaded.python,
        "image": loaded.image_tag,
        "digest": made.digest if made is not None else None,
        "source": made.source if made is not None else None,
    }
