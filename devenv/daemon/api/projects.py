"""/v1/projects/lock|build|verify|run: `devenv lock`, `build`, `verify` and `run` on the daemon's engines (`ci run`
and `promote`: delivery.py; base images: images.py; the streams: work_stream.py).

The CLI sends the project's few files (as `up` does) and reads the progress as it comes; the daemon, the one
owner of the engines, does the work and answers with the lock's text, the image's tag, or a command's
output. Any member may: it is what `up` does before it starts a workspace, without the workspace.

No `from __future__ import annotations` here: FastAPI must see the caller dependency's real type.
"""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import Field

from devenv import wire
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.api.streams import NDJSON
from devenv.daemon.api.work_stream import Channel, work_frames
from devenv.daemon.api.workspaces import ProjectUpload
from devenv.daemon.services.access import Caller
from devenv.daemon.services.project_work import ProjectWork
from devenv.daemon.services.projects import check_upload


class OnRequest(ProjectUpload):
    on: str | None = Field(default=None, description="the backend whose engine does it (default: the spec's)")


class LockRequest(OnRequest):
    upgrade: bool = Field(default=False, description="re-resolve against the newest index")


class BuildRequest(OnRequest):
    no_cache: bool = Field(default=False, description="run every step again")


class RunRequest(OnRequest):
    argv: list[str] = Field(min_length=1, max_length=4096, description="the command and its arguments")
    network: bool = Field(default=True, description="with networking (False: none)")


def project_router(work: ProjectWork, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["projects"])

    @router.post("/projects/lock", **allow(Rule.MEMBER))
    def lock(body: LockRequest) -> StreamingResponse:
        """devenv.lock resolved on a backend's engine; the stream's last line is `locked` (or `error`)."""
        upload = check_upload(body.spec_path, body.files)
        work.check(upload, body.on, locked=False)

        def resolve(channel: Channel) -> wire.WorkFrame:
            done = work.lock(upload, body.on, upgrade=body.upgrade, progress=channel.progress)
            locked: wire.LockedView = {
                "lock": done.lock,
                "changed": done.changed,
                "python": done.python,
                "apt": done.apt,
                "tooling": done.tooling,
            }
            return {"locked": locked}

        return StreamingResponse(work_frames(resolve), media_type=NDJSON)

    @router.post("/projects/build", **allow(Rule.MEMBER))
    def build(body: BuildRequest) -> StreamingResponse:
        """The project's image built on a backend's engine; the stream's last line is `built` (or `error`)."""
        upload = check_upload(body.spec_path, body.files)
        work.check(upload, body.on, locked=True)

        def make(channel: Channel) -> wire.WorkFrame:
            done = work.build(upload, body.on, no_cache=body.no_cache, progress=channel.progress)
            built: wire.BuiltView = {
                "tag": done.result.tag,
                "image_id": done.result.image_id,
                "cached": done.result.cached,
                "backend": done.backend,
            }
            return {"built": built}

        return StreamingResponse(work_frames(make), media_type=NDJSON)

    @router.post("/projects/verify", **allow(Rule.MEMBER))
    def verify(body: OnRequest) -> StreamingResponse:
        """`devenv verify`: the image rebuilt from the lock with no cache on a backend's engine, and proved the
        image in use; the stream's last line is `verified` (or `error`: verify_mismatch names what differs)."""
        upload = check_upload(body.spec_path, body.files)
        work.check_verifiable(upload, body.on)

        def prove(channel: Channel) -> wire.WorkFrame:
            done = work.verify(upload, body.on, progress=channel.progress)
            verified: wire.VerifiedView = {
                "tag": done.tag,
                "image_id": done.image_id,
                "build_seconds": done.build_seconds,
            }
            return {"verified": verified}

        return StreamingResponse(work_frames(prove), media_type=NDJSON)

    @router.post("/projects/run", **allow(Rule.MEMBER))
    def run(body: RunRequest) -> StreamingResponse:
        """`devenv run`: built if needed, then one command in a throwaway container, confined as a workspace;
        its output as base64 chunks by stream, then `exit` (or `error`). The container goes when the reader
        does."""
        upload = check_upload(body.spec_path, body.files)
        work.check(upload, body.on, locked=True)

        def execute(channel: Channel) -> wire.WorkFrame:
            return channel.forward(
                work.run(upload, body.on, body.argv, network=body.network, progress=channel.progress)
            )

        return StreamingResponse(work_frames(execute), media_type=NDJSON)

    return router
