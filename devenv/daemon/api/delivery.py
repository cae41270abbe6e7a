"""/v1/projects/ci and /v1/projects/promote: `devenv ci run` and `devenv promote`, the work that takes the
project's code (uploaded first with PUT /v1/code, named here by its hash: only its uploader's) as well as
its few files.

No `from __future__ import annotations` here: FastAPI must see the caller dependency's real type.
"""

import base64
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from devenv import wire
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.api.code import HASH
from devenv.daemon.api.projects import OnRequest
from devenv.daemon.api.streams import NDJSON
from devenv.daemon.api.work_stream import Channel, work_frames
from devenv.daemon.services.access import Caller
from devenv.daemon.services.project_work import ProjectWork
from devenv.daemon.services.projects import check_upload
from devenv.errors import UsageError
from devenv.promote.package import CommitFacts, Promotion


class CiRequest(OnRequest):
    code: str = Field(pattern=HASH, description="the project folder, uploaded with PUT /v1/code")


Text = Annotated[str, StringConstraints(max_length=1000)]


class RegistryLogin(BaseModel):
    """The person's login to the registry `--to` names (from their docker config), used for one push."""

    model_config = ConfigDict(extra="forbid")
    serveraddress: Text
    username: Text | None = None
    password: Annotated[str, StringConstraints(max_length=16384)] | None = None
    identitytoken: Annotated[str, StringConstraints(max_length=16384)] | None = None


class PromoteRequest(OnRequest):
    code: str = Field(pattern=HASH, description="git archive of the commit, uploaded with PUT /v1/code")
    commit: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$", description="the commit packaged")
    when: int = Field(ge=0, le=2**40, description="the commit's time, seconds since 1970")
    dirty: bool = False
    source: Text | None = Field(default=None, description="the origin's URL, without credentials")
    data_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    notes: list[Text] = Field(default_factory=list, max_length=8)
    tag: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,299}$", description="REGISTRY/NAME:TAG"
    )
    push: bool = Field(default=False, description="push `tag` to its registry and pull it back by digest")
    auth: RegistryLogin | None = Field(default=None, description="for the push; never stored or logged")


def delivery_router(work: ProjectWork, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["projects"])
    actor_type = Annotated[Caller, Depends(caller)]

    @router.post("/projects/promote", **allow(Rule.MEMBER))
    def promote(body: PromoteRequest, actor: actor_type) -> StreamingResponse:
        """`devenv promote`: the production image of the uploaded commit on a backend's engine, gated by
        `ci.test`, pushed with the person's login when asked; the stream's last line is `promoted` (or
        `error`: promote_gate_failed with the tests' output, push_failed)."""
        upload = check_upload(body.spec_path, body.files)
        if body.push and not body.tag:
            raise UsageError("a push needs the target: `devenv promote --to REGISTRY/NAME:TAG`")
        work.check_promote(upload, body.on, body.code, actor.name, admin=actor.admin)
        facts = CommitFacts(body.commit, body.when, body.dirty, body.source, body.data_hash, tuple(body.notes))
        auth = body.auth.model_dump(exclude_none=True) if body.auth is not None else None

        def package(channel: Channel) -> wire.WorkFrame:
            made = work.promote(
                upload, body.on, body.code, facts, tag=body.tag, push=body.push, auth=auth, progress=channel.progress
            )
            return {"promoted": _promoted_view(made)}

        return StreamingResponse(work_frames(package), media_type=NDJSON)

    @router.post("/projects/ci", **allow(Rule.MEMBER))
    def ci(body: CiRequest, actor: actor_type) -> StreamingResponse:
        """`devenv ci run`: built if needed, then `ci.test` in a throwaway container, in the uploaded project
        folder; its output by stream, then `changed` (a tar of the files the tests wrote there, base64), then
        `exit` (or `error`)."""
        upload = check_upload(body.spec_path, body.files)
        work.check_ci(upload, body.on, body.code, actor.name, admin=actor.admin)

        def test(channel: Channel) -> wire.WorkFrame:
            return channel.forward(work.ci(upload, body.on, body.code, progress=channel.progress))

        return StreamingResponse(work_frames(test), media_type=NDJSON)

    return router


def _promoted_view(made: Promotion) -> wire.PromotedView:
    pushed: wire.PushedView | None = None
    if made.pushed is not None:
        sent = made.pushed
        pushed = {
            "reference": sent.reference,
            "digest": sent.digest,
            "layers_sent": sent.layers_sent,
            "layers_present": sent.layers_present,
            "bytes_sent": sent.bytes_sent,
        }
    return {
        "tag": made.tag,
        "image_id": made.image_id,
        "commit": made.commit,
        "dirty": made.dirty,
        "created": made.created,
        "labels": dict(made.labels),
        "sbom": base64.b64encode(made.sbom).decode(),
        "gate": made.gate,
        "added_bytes": made.added_bytes,
        "pushed": pushed,
        "notes": list(made.notes),
    }
