"""Shared memory in a workspace (issue 18): a 1 GiB `multiprocessing.shared_memory` block written and read
inside a devenv workspace, against the same in a bare `docker run --shm-size` of the same image.

    python tests/bench/bench_shm.py [--rounds 3]

1. The 1 GiB write and read in the workspace (`devenv exec`, the real CLI and a real devenvd;
   rounds interleaved with 2.), its /dev/shm
   sized by devenv's default (half the 4Gi memory limit).
2. The same script in `docker run --rm --cpus 2 --memory 4g --shm-size <same> IMAGE`
   (the workspace's CPU and memory limits): the floor, and the ratio.
3. The same without --shm-size (Docker's 64 MiB, what workspaces had before): how it ends.

Not a timed test: it prints figures; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devenv.backends.base import container_name
from devenv.build.base import ensure_base, load_recipe
from devenv.build.project import build_project, lock_project, open_project
from devenv.engine.connect import connect
from devenv.testing.projects import copy_template

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command

WORKSPACE = "bench-shm"
SHM_PY = """
import json, time
from multiprocessing import shared_memory
size, chunk = 1 << 30, 64 << 20
began = time.perf_counter()
block = shared_memory.SharedMemory(create=True, size=size)
try:
    data = b"\\x5a" * chunk
    for offset in range(0, size, chunk):
        block.buf[offset:offset + chunk] = data
    wrote = time.perf_counter()
    seen = sum(bytes(block.buf[offset:offset + chunk]).count(0x5a) for offset in range(0, size, chunk))
    read = time.perf_counter()
finally:
    block.close()
    block.unlink()
print(json.dumps({"bytes": seen, "write_s": wrote - began, "read_s": read - wrote}))
"""


def figures(command: list[str]) -> dict[str, float]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} exited {done.returncode}: {done.stderr[-500:]}")
    answer: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["bytes"] == 1 << 30
    return answer


def summary(seen: list[dict[str, float]]) -> tuple[float, float]:
    return statistics.median(f["write_s"] for f in seen), statistics.median(f["read_s"] for f in seen)


def daemon_cli(daemon: Devenvd) -> list[str]:
    """`devenv` against this daemon, as a person runs it (its env is passed through `env`)."""
    return ["env", "-i", *(f"{key}={value}" for key, value in daemon.env.items()), devenv_command()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    engine = connect()
    ensure_base(engine, load_recipe("cpu"))
    spec = copy_template(
        "minimal", Path(tempfile.mkdtemp(prefix="bench-shm-", dir="/tmp")) / "p", project_name=WORKSPACE
    )
    spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false"))
    project = open_project(spec)
    lock_project(engine, project)
    image = build_project(engine, project).tag

    daemon = Devenvd()
    daemon.start()
    try:
        daemon.cli("up", cwd=spec.parent, check=True)
        shm = engine.containers.get(container_name(WORKSPACE)).attrs["HostConfig"]["ShmSize"]
        bare_run = [
            "docker",
            "run",
            "--rm",
            "--cpus",
            "2",
            "--memory",
            "4g",
            "--shm-size",
            str(shm),
            "--entrypoint",
            "python3",
            image,
            "-c",
            SHM_PY,
        ]
        inside = [*daemon_cli(daemon), "exec", WORKSPACE, "--", "python3", "-c", SHM_PY]
        ours_seen, bare_seen = [], []
        for _ in range(rounds):  # interleaved: the machine's other load falls on both alike
            ours_seen.append(figures(inside))
            bare_seen.append(figures(bare_run))
        ours, bare = summary(ours_seen), summary(bare_seen)
        print(f"/dev/shm: {shm / 2**30:.1f} GiB (devenv's default for a 4Gi memory limit); median of {rounds}")
        for label, index in (("write 1 GiB", 0), ("read 1 GiB", 1)):
            print(
                f"{label:<12} workspace {ours[index]:6.2f} s   docker run --shm-size {bare[index]:6.2f} s   "
                f"ratio {ours[index] / bare[index]:5.2f}"
            )
        small = subprocess.run(
            ["docker", "run", "--rm", "--memory", "4g", "--entrypoint", "python3", image, "-c", SHM_PY],
            capture_output=True,
            text=True,
            timeout=300,
        )
        ending = "bus error (SIGBUS)" if small.returncode in (-7, 135) else f"exit {small.returncode}"
        print(f"without --shm-size (Docker's 64 MiB, workspaces before issue 18): {ending}")
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    main()
