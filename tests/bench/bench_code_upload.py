"""Code upload figures for issue 18: moving a project folder into a workspace, against `docker cp`.

    python tests/bench/bench_code_upload.py [--rounds 3] [--files 5000] [--megabytes 100]

A project of FILES files and MEGABYTES MB (many small sources, a few large files) is made beside a built
minimal spec. Each round rewrites every file (same sizes, new content), then times

  - `devenv sync WS` (the real CLI: collect, tar, PUT /v1/code, the daemon's checks, the parts through
    the engine's API, the three-way compare and the placing as dev)  vs
  - `docker cp FOLDER CONTAINER:/home/dev/cp-N` of the same folder into the same running container,

and prints both medians and their ratio. The first `devenv up` (which uploads and places the folder) is
timed too. Every command is the real CLI against a real devenvd and the real engine. Not a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devenv.testing.projects import built_minimal_project

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command

NAME = "bench-code"


def make_files(folder: Path, files: int, megabytes: int, round_: int) -> None:
    """`files` files of `megabytes` MB in all: 2% of them carry 80% of the bytes (weights, data)."""
    large = max(1, files // 50)
    small = files - large
    total = megabytes * 1_000_000
    small_size, large_size = int(total * 0.2) // small, int(total * 0.8) // large
    for index in range(small):
        path = folder / "src" / f"pkg{index % 50:02d}" / f"module_{index:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"# round {round_} file {index}\n"
        path.write_text((line * (small_size // len(line) + 1))[:small_size])
    for index in range(large):
        path = folder / "assets" / f"blob_{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(large_size))


def timed(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    spec = built_minimal_project(NAME)
    folder = spec.parent
    make_files(folder, args.files, args.megabytes, 0)
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        daemon = Devenvd(home=Path(tmp) / "home")
        daemon.start()
        try:
            cli = devenv_command()
            up = timed([cli, "up"], env=daemon.env, cwd=folder)
            container = f"devenv-{NAME}"
            syncs, copies = [], []
            for round_ in range(1, args.rounds + 1):
                make_files(folder, args.files, args.megabytes, round_)
                syncs.append(timed([cli, "sync", NAME], env=daemon.env, cwd=folder))
                copies.append(timed(["docker", "cp", f"{folder}/.", f"{container}:/home/dev/cp-{round_}"]))
            sync, copy = statistics.median(syncs), statistics.median(copies)
            print(f"project: {args.files} files, {args.megabytes} MB; rounds: {args.rounds}")
            print(f"devenv up (build cached, upload + first placing): {up:.2f} s")
            print(f"devenv sync (every file changed): median {sync:.2f} s  {_seconds(syncs)}")
            print(f"docker cp (same folder, same container): median {copy:.2f} s  {_seconds(copies)}")
            print(f"ratio sync / docker cp: {sync / copy:.2f}x")
        finally:
            daemon.cleanup()


if __name__ == "__main__":
    main()
