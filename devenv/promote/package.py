"""`devenv promote`: the steps, in order. Nothing is pushed unless every step before it passed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from devenv.build.project import Project, build_project, checked_lock
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient
from devenv.errors import DevenvError, UsageError
from devenv.progress import Progress, emit
from devenv.promote.image import assemble, rfc3339
from devenv.promote.layers import SBOM_PATH, code_layer
from devenv.promote.push import Pushed, push

GATE_OUTPUT = 4000  # characters of a failed gate's output kept in the error


class GateFailed(DevenvError):
    """The spec's tests failed inside the production image: nothing is pushed."""

    code = "promote_gate_failed"


@dataclass(frozen=True)
class CommitFacts:
    """What the client read from its git checkout (devenv/versioning/commit.py): the daemon has none."""

    commit: str
    when: int  # the commit's time, seconds: the image's created time
    dirty: bool
    source: str | None = None  # the origin's URL, without credentials
    data_hash: str | None = None  # DVC's, at the commit
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Promotion:
    tag: str
    image_id: str
    commit: str
    dirty: bool
    created: str
    labels: dict[str, str]
    sbom: bytes
    gate: str  # "passed", or why there was none
    added_bytes: int
    pushed: Pushed | None = None  # once pushed and pulled back by digest
    notes: list[str] = field(default_factory=list)


def promote(
    client: DockerClient,
    project: Project,
    facts: CommitFacts,
    code: Path,
    *,
    tag: str | None = None,
    push_to_registry: bool = False,
    auth_config: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Promotion:
    """Build, assemble, gate, and (with `push_to_registry`, `tag` naming a registry) push and verify.

    `code`: git archive's tar of `facts.commit`. `auth_config`: the person's registry login; never the
    engine owner's (an empty one is sent instead of the SDK's fallback to this process's docker config)."""
    spec = project.spec
    check_promotable(project)
    assert spec.promote is not None
    commit, when = facts.commit, facts.when
    notes = list(facts.notes)
    lock = checked_lock(project)
    emit(progress, "phase", "building the dev image it starts from (a tag lookup when built)")
    dev = build_project(client, project, progress)
    from devenv.promote.sbom import cyclonedx, sbom_bytes

    created = dt.datetime.fromtimestamp(when, dt.UTC)
    sbom = sbom_bytes(cyclonedx(lock, name=spec.name, version=commit, created=created))
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.created": rfc3339(when),
        "org.opencontainers.image.base.name": lock.base.image,
        "org.opencontainers.image.base.digest": lock.base.digest,
        "devenv.lock-hash": lock.content_hash(),
        "devenv.base-digest": lock.base.digest,
        "devenv.dev-image-hash": dev.tag.rsplit(":", 1)[-1],
        "devenv.sbom": f"/{SBOM_PATH}",
    }
    if facts.source:
        labels["org.opencontainers.image.source"] = facts.source
    if facts.data_hash:
        labels["devenv.data-hash"] = facts.data_hash
    emit(progress, "phase", f"assembling the production image at {commit[:12]}")
    with code.open("rb") as archive:
        layer = code_layer(archive, mtime=when, extra={SBOM_PATH: sbom})
    target = tag or f"devenv/{spec.name}-prod:{commit[:12]}"
    made = assemble(
        client,
        dev.tag,
        tag=target,
        created=when,
        entrypoint=list(spec.promote.entrypoint),
        labels=labels,
        strip=list(spec.promote.strip),
        layers=[(f"devenv promote: /app at {commit}", layer)],
    )
    gate = "no `ci.test` in the spec: promoted without a gate"
    if spec.ci is not None:
        emit(progress, "phase", f"gate: running `{spec.ci.test}` in the production image")
        run_gate(client, target, spec.ci.test)
        gate = "passed"
    else:
        notes.append(gate)
    pushed = push(client, target, auth_config=auth_config or {}, progress=progress) if push_to_registry else None
    return Promotion(
        target,
        made.image_id,
        commit,
        facts.dirty,
        rfc3339(when),
        labels,
        sbom,
        gate,
        made.added_bytes,
        pushed=pushed,
        notes=notes,
    )


def check_promotable(project: Project) -> None:
    """A spec without `promote:` has nothing to package (said before anything is built or uploaded)."""
    if project.spec.promote is None:
        raise UsageError(
            f"{project.spec_path}: no `promote:` section",
            hint='add `promote: {entrypoint: "python -m app"}` to devenv.yaml',
        )


def run_gate(client: DockerClient, image: str, test: str) -> None:
    """The spec's test command in the production image, in /app, as dev; GateFailed unless it exits 0."""
    with engine_errors(f"running the gate in {image}"):
        container = client.containers.create(
            image, [test], entrypoint=["bash", "-c"], user="dev", working_dir="/app", labels={"devenv.one-shot": "true"}
        )
        try:
            container.start()
            code = int(container.wait().get("StatusCode", 1))
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)
    if code != 0:
        raise GateFailed(
            f"`{test}` failed in the production image {image} (exit {code}); nothing was pushed\n"
            f"{output[-GATE_OUTPUT:].rstrip()}",
            hint="fix the tests (they run in /app as dev, without dev tooling); commit; promote again",
        )
