"""Promotion figures for issue 8, each against its floor measured in the same run.

    python tests/bench/bench_promote.py [--template minimal]

1. Production image size against the dev image it comes from (ratio).
2. Bytes pushed to a registry after a code-only change, against the full image's compressed size.
3. Promote the same commit twice (the second time after removing the first image): same image id
   and, pushed, the same digest (yes/no).
4. Wall time of a promote (dev image built) against `docker build` of a plain Dockerfile that adds the
   same code to the dev image (the floor a hand-written production Dockerfile would cost).

Not a timed test: it prints figures; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devenv.build.project import build_project, lock_project, open_project
from devenv.engine.connect import connect
from devenv.testing.projects import copy_template

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.git_server import git
from harness.promotion import promote_here
from harness.registry import Registry

APP = "def answer():\n    return 42\n\n\nif __name__ == '__main__':\n    print(answer())\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", default="minimal")
    template = parser.parse_args().template
    client = connect(None)
    with tempfile.TemporaryDirectory(prefix="bench-promote-") as tmp:
        folder = Path(tmp) / "app"
        spec = copy_template(template, folder, project_name="bench-promote")
        spec.write_text(
            spec.read_text() + "promote:\n  entrypoint: python app.py\n"
            "ci:\n  test: python -c 'import app; assert app.answer() == 42'\n"
        )
        (folder / "app.py").write_text(APP)
        lock_project(client, open_project(spec))
        dev = build_project(client, open_project(spec))
        git(folder, "init", "--quiet", "--initial-branch=main")
        git(folder, "add", "--all")
        git(folder, "commit", "--quiet", "-m", "first")
        with Registry(Path(tmp) / "registry") as registry:
            target = f"{registry.host}/bench/promote:1"
            started = time.perf_counter()
            first = promote_here(client, folder, tag=target, push_to_registry=True)
            promote_seconds = time.perf_counter() - started
            assert first.pushed is not None
            full = sum(registry.blob_sizes("bench/promote", "1").values())
            dev_size = client.images.get(dev.tag).attrs["Size"]
            prod_size = client.images.get(target).attrs["Size"]

            client.images.remove(target, force=True)
            again = promote_here(client, folder, tag=f"{registry.host}/bench/promote:1b", push_to_registry=True)
            assert again.pushed is not None
            same = again.image_id == first.image_id and again.pushed.digest == first.pushed.digest

            (folder / "app.py").write_text(APP + "# a code-only change\n")
            git(folder, "commit", "--quiet", "-am", "code only")
            second = promote_here(client, folder, tag=f"{registry.host}/bench/promote:2", push_to_registry=True)
            assert second.pushed is not None

            dockerfile = Path(tmp) / "floor"
            dockerfile.mkdir()
            subprocess.run(["git", "-C", str(folder), "archive", "-o", str(dockerfile / "app.tar"), "HEAD"], check=True)
            (dockerfile / "Dockerfile").write_text(
                f'FROM {dev.tag}\nADD app.tar /app/\nWORKDIR /app\nENTRYPOINT ["python", "app.py"]\n'
            )
            started = time.perf_counter()
            subprocess.run(
                ["docker", "build", "-q", "--no-cache", "-t", "bench-promote-floor", str(dockerfile)],
                check=True,
                capture_output=True,
            )
            floor_seconds = time.perf_counter() - started
            subprocess.run(["docker", "rmi", "-f", "bench-promote-floor"], capture_output=True)
            for image in client.images.list(name=f"{registry.host}/bench/promote"):
                client.images.remove(image.id, force=True)

    print(
        f"production image {prod_size / 1e6:.0f} MB vs dev image {dev_size / 1e6:.0f} MB: "
        f"ratio {prod_size / dev_size:.2f}"
    )
    print(
        f"pushed after a code-only change: {second.pushed.bytes_sent / 1e3:.1f} kB in "
        f"{second.pushed.layers_sent} layer(s) vs the full image {full / 1e6:.1f} MB compressed: "
        f"ratio {second.pushed.bytes_sent / full:.5f}"
    )
    print(f"same commit promoted twice: same image id and digest: {'yes' if same else 'NO'} ({first.pushed.digest})")
    print(
        f"promote (gate, assemble, push, pull back) {promote_seconds:.1f} s; floor: docker build adding the code "
        f"to the dev image (no gate, no push) {floor_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
