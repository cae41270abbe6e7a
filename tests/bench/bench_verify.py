"""Reproducible builds and `devenv verify`, in figures (issue 20): nothing asserts on them.

    python tests/bench/bench_verify.py [--template minimal]

Locks the template once, then: `devenv build --no-cache` twice (build_project with no_cache, what the
command runs), `devenv verify` once (verify_project, what the command runs). Prints the build and
verify times and their ratio, the share of the build spent normalising, the image IDs, and the share
of layers byte-identical (same diff_id) between the two builds: after normalising (the images built)
and before (the builder's own layers of the same two builds, which stay as its step cache).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

from devenv.build.builder import BuildResult
from devenv.build.project import build_project, lock_project, open_project
from devenv.build.verify import verify_project
from devenv.engine.connect import connect
from devenv.testing.projects import copy_template

NAME = "bench-verify"


def raw_layers(client: docker.DockerClient, result: BuildResult) -> list[str]:
    """The builder's own layers of a build: its last step image before the final (empty) LABEL commit."""
    return layers(client, result.made[-2])


def layers(client: docker.DockerClient, image: str) -> list[str]:
    return list(client.images.get(image).attrs["RootFS"]["Layers"])


def same(first: list[str], second: list[str]) -> str:
    equal = sum(1 for a, b in zip(first, second, strict=False) if a == b)
    total = max(len(first), len(second))
    return f"{equal}/{total} ({100 * equal / total:.0f}%)"


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures as they come
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", default="minimal")
    args = parser.parse_args()
    client = connect()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        project = open_project(copy_template(args.template, Path(tmp), project_name=NAME))
        lock_project(client, project)
        builds: list[BuildResult] = []
        for round_ in (1, 2):
            started = time.perf_counter()
            result = build_project(client, project, no_cache=True)
            seconds = time.perf_counter() - started
            builds.append(result)
            print(
                f"build --no-cache #{round_}: {seconds:.1f}s (normalising {result.normalise_seconds:.1f}s, "
                f"{100 * result.normalise_seconds / seconds:.0f}%), {result.image_id}"
            )
        started = time.perf_counter()
        verified = verify_project(client, project)
        verify_seconds = time.perf_counter() - started
        print(f"verify: {verify_seconds:.1f}s (its rebuild {verified.build_seconds:.1f}s), {verified.image_id}")
        first, second = builds
        fastest = min(build.seconds for build in builds)
        print(f"same image ID: {first.image_id == second.image_id == verified.image_id}")
        print(f"build --no-cache {fastest:.1f}s, verify {verify_seconds:.1f}s, ratio {verify_seconds / fastest:.2f}")
        before = same(raw_layers(client, first), raw_layers(client, second))
        after = same(layers(client, first.image_id), layers(client, second.image_id))
        print(
            f"layers byte-identical between the two builds (the base's included): before normalising {before}, "
            f"after {after}"
        )
        for image in [first.tag, first.image_id, *reversed(first.made), *reversed(second.made)]:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image)


if __name__ == "__main__":
    main()
