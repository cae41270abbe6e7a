"""/v1/projects/lock|build|verify|promote|run|ci and /v1/images: `devenv lock`, `build`, `verify`, `promote`,
`run`, `ci run` and `images` on the daemon's engines.

The CLI sends the project's few files (as `up` does) and reads the progress as it comes; the daemon, the one
owner of the engines, does the work and answers with the lock's text, the image's tag, or a command's
output. Any member may: it is what `up` does before it starts a workspace, without the workspace.

No `from __future__ import annotations` here: FastAPI must see the caller dependency's real type.
"""

import base64
import logging
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from devenv import wire
from devenv.build.base import load_recipe
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.api.code import HASH
from devenv.daemon.api.streams import HEARTBEAT, HEARTBEAT_SECONDS, NDJSON, line
from devenv.daemon.api.workspaces import ProjectUpload
from devenv.daemon.services.access import Caller
from devenv.daemon.services.project_work import ProjectWork
from devenv.daemon.services.projects import check_upload
from devenv.errors import DevenvError, UsageError, error_payload
from devenv.lock.models import BaseImage
from devenv.progress import ProgressEvent
from devenv.promote.package import CommitFacts, Promotion

log = logging.getLogger("devenvd.projects")


class OnRequest(ProjectUpload):
    on: str | None = Field(default=None, description="the backend whose engine does it (default: the spec's)")


class LockRequest(OnRequest):
    upgrade: bool = Field(default=False, description="re-resolve against the newest index")


class BuildRequest(OnRequest):
    no_cache: bool = Field(default=False, description="run every step again")


class RunRequest(OnRequest):
    argv: list[str] = Field(min_length=1, max_length=4096, description="the command and its arguments")
    network: bool = Field(default=True, description="with networking (False: none)")


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


def project_router(work: ProjectWork, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["projects"])
    actor_type = Annotated[Caller, Depends(caller)]

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

    @router.post("/projects/run", **allow(Rule.MEMBER))
    def run(body: RunRequest) -> StreamingResponse:
        """`devenv run`: built if needed, then one command in a throwaway container, confined as a workspace;
        its output as base64 chunks by stream, then `exit` (or `error`). The container goes when the reader
        does."""
        upload = check_upload(body.spec_path, body.files)
        work.check(upload, body.on, locked=True)

        def execute(channel: Channel) -> wire.WorkFrame:
            stream = work.run(upload, body.on, body.argv, network=body.network, progress=channel.progress)
            if stream.stop is not None:
                channel.on_stop(stream.stop)
            for which, chunk in stream:
                text = base64.b64encode(chunk).decode()
                channel.send({"stdout": text} if which == "stdout" else {"stderr": text})
            return {"exit": stream.exit_code if stream.exit_code is not None else 1}

        return StreamingResponse(work_frames(execute), media_type=NDJSON)

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
            stream = work.ci(upload, body.on, body.code, progress=channel.progress)
            if stream.stop is not None:
                channel.on_stop(stream.stop)
            for which, chunk in stream:
                text = base64.b64encode(chunk).decode()
                if which == "changed":
                    channel.send({"changed": text})
                else:
                    channel.send({"stdout": text} if which == "stdout" else {"stderr": text})
            return {"exit": stream.exit_code if stream.exit_code is not None else 1}

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


def _base_view(recipe: str, made: BaseImage | None) -> wire.BaseView:
    loaded = load_recipe(recipe)
    return {
        "recipe": recipe,
        "python": loaded.python,
        "image": loaded.image_tag,
        "digest": made.digest if made is not None else None,
        "source": made.source if made is not None else None,
    }


class Channel:
    """What a piece of work sends while it runs (progress, output), and how to end it early."""

    def __init__(self) -> None:
        self.frames: queue.Queue[wire.WorkFrame | None] = queue.Queue()
        self.stops: list[Callable[[], None]] = []

    def send(self, frame: wire.WorkFrame) -> None:
        self.frames.put(frame)

    def progress(self, event: ProgressEvent) -> None:
        shown: wire.ProgressView = {
            "kind": event.kind,
            "message": event.message,
            "current": event.current,
            "total": event.total,
        }
        self.send({"progress": shown})

    def on_stop(self, stop: Callable[[], None]) -> None:
        self.stops.append(stop)


async def work_frames(work: Callable[[Channel], wire.WorkFrame]) -> AsyncIterator[bytes]:
    """Run `work` on a thread of its own; what it sends as NDJSON lines as it comes (a heartbeat line when
    quiet, so the client knows the daemon is there), then its answer or its error.

    A reader that goes away (Starlette cancels the stream when the client disconnects) stops what the work
    registered with `on_stop`, at once: a command nobody reads does not run on. A lock or a build goes on: half
    done it would be lost, and the next one reuses it. An async generator, so that the cancellation reaches
    this `finally` when it happens, not when the garbage collector finds a generator nobody iterates."""
    channel = Channel()
    answer: list[wire.WorkFrame] = []

    def run() -> None:
        try:
            answer.append(work(channel))
        except DevenvError as error:
            answer.append({"error": error_payload(error)})
        except Exception as error:  # a bug: logged with its traceback; the person gets a line, never a hang
            log.exception("project work failed")
            answer.append({"error": error_payload(DevenvError(f"the daemon failed: {error.__class__.__name__}"))})
        finally:
            channel.frames.put(None)

    threading.Thread(target=run, name="project-work", daemon=True).start()
    finished = False
    try:
        while True:
            try:
                frame = await anyio.to_thread.run_sync(_next_frame, channel, abandon_on_cancel=True)
            except queue.Empty:
                yield HEARTBEAT
                continue
            if frame is None:
                break
            yield line(dict(frame))
        finished = True
        yield line(dict(answer[0]))
    finally:
        if not finished:  # on a thread: this runs while the stream is being cancelled, and stopping may take a while
            threading.Thread(target=_stop_all, args=(channel.stops,), name="project-work-stop", daemon=True).start()


def _next_frame(channel: Channel) -> wire.WorkFrame | None:
    return channel.frames.get(timeout=HEARTBEAT_SECONDS)


def _stop_all(stops: list[Callable[[], None]]) -> None:
    for stop in stops:
        try:
            stop()
        except Exception:
            log.exception("stopping work whose reader went away")
