"""Build figures for issue 3, each against a floor measured in the same run.

    python tests/bench/bench_build.py [--template sklearn]

1. Cold build: `devenv build --no-cache` against plain `docker build --no-cache` of the same rendered
   Dockerfile and context (artifacts pre-fetched for both, so neither measures the network).
2. No-change rebuild: wall time of the `devenv build` command and of the in-process build call.
3. One-package change: which layers were reused, and the time against the cold build.

Not a timed test: it prints figures and ratios; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devenv.build.base import ensure_base, load_recipe
from devenv.build.builder import assemble_context, build_image
from devenv.build.project import build_project, checked_lock, lock_project, open_project, project_plan
from devenv.engine.connect import connect
from devenv.resources import templates_dir


def timed(action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", default="sklearn")
    args = parser.parse_args()
    client = connect()
    ensure_base(client, load_recipe("cpu"))
    work = Path(tempfile.mkdtemp(prefix="devenv-bench-"))
    try:
        for path in (templates_dir() / args.template).iterdir():
            shutil.copy2(path, work / path.name)
        spec = work / "devenv.yaml"
        spec.write_text(spec.read_text().replace(f"name: {args.template}\n", "name: bench-build\n", 1))
        project = open_project(spec)
        lock_project(client, project)
        plan = project_plan(project, checked_lock(project))
        context = work / "context"
        context.mkdir()
        assemble_context(plan, context, None)  # warms the artifact cache for both sides

        # Alternating order (plain, devenv, plain, devenv) so neither side profits from going second;
        # devenv goes last, so the one-package change below reuses the cold image's own layers.
        plain_tag = "devenv-bench/plain:latest"

        def plain_build() -> None:
            subprocess.run(
                ["docker", "build", "--no-cache", "--network", "none", "-q", "-t", plain_tag, str(context)],
                check=True,
                capture_output=True,
            )

        plain_times: list[float] = []
        devenv_times: list[float] = []
        for _ in range(2):
            plain_times.append(timed(plain_build)[0])
            seconds, result = timed(lambda: build_image(client, plan, no_cache=True))
            devenv_times.append(seconds)
        cold_devenv, cold_plain = statistics.mean(devenv_times), statistics.mean(plain_times)

        cli = shutil.which("devenv") or sys.exit("devenv is not installed")
        walls = []
        for _ in range(5):
            wall, _ = timed(
                lambda: subprocess.run([cli, "build", "-f", str(spec)], check=True, capture_output=True, text=True)
            )
            walls.append(wall)
        in_process = [timed(lambda: build_project(client, project))[0] for _ in range(5)]
        cached = build_project(client, project).cached

        requirements = work / "requirements.in"
        requirements.write_text(requirements.read_text() + "six\n")
        changed_project = open_project(spec)
        lock_project(client, changed_project)
        change_seconds, changed = timed(lambda: build_project(client, changed_project))
        before = client.images.get(result.tag).attrs["RootFS"]["Layers"]
        after = client.images.get(changed.tag).attrs["RootFS"]["Layers"]
        shared = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), len(after))
        base_layers = len(client.images.get(plan.lock.base.image).attrs["RootFS"]["Layers"])

        print(
            f"template: {args.template} ({len(plan.lock.python)} Python, {len(plan.lock.apt)} apt, "
            f"{len(plan.lock.tooling)} tooling packages)"
        )
        print(
            f"cold build   devenv {cold_devenv:7.1f}s {devenv_times}  plain docker build {cold_plain:7.1f}s "
            f"{plain_times}  "
            f"ratio {cold_devenv / cold_plain:.2f} (target <= 1.10)"
        )
        print(
            f"no-change    `devenv build` median {statistics.median(walls):.2f}s wall "
            f"(in-process {statistics.median(in_process) * 1000:.0f} ms), build started: {not cached} "
            f"(target < 1 s)"
        )
        print(
            f"one package  {change_seconds:7.1f}s vs cold {cold_devenv:.1f}s "
            f"(ratio {change_seconds / cold_devenv:.2f}); steps from cache {changed.steps_cached}, "
            f"steps run {changed.steps_run}; first {shared} of {len(after)} layers shared with the cold "
            f"image (base {base_layers} + apt {2 if plan.lock.apt else 0})"
        )
        for instruction in changed.cached_instructions:
            print(f"    reused: {instruction[:90]}")
        for tag in (result.tag, changed.tag, plain_tag):
            client.images.remove(tag, force=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
