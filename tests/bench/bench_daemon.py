"""Daemon and lifecycle figures for issue 4, each against a floor measured in the same run.

    python tests/bench/bench_daemon.py [--rounds 5] [--records 10000]

1. Warm `devenv up` (image built) + `devenv exec WS true`  vs  `docker run -d IMAGE` + `docker exec true`.
2. `devenv start` of a stopped workspace + exec true       vs  `docker start` + `docker exec true`.
3. With N workspace records in the store: GET /v1/workspaces p50/p99 (through the client, on the unix
   socket), and `devenv ls` wall time vs `docker ps`.
4. `devenv --help` wall time.

Every command is the real CLI (a new process, as a person runs it) against a real devenvd.
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
from collections.abc import Callable
from pathlib import Path

from devenv.build.base import ensure_base, load_recipe
from devenv.build.project import build_project, lock_project, open_project
from devenv.engine.connect import connect
from devenv.testing.projects import copy_template
from devenv.upload import collect_project

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


DEVENV = devenv_command()


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run a command as a person would; `devenv` is the installed script itself, not a pyenv shim."""
    command = [DEVENV, *argv[1:]] if argv[0] == "devenv" else list(argv)
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=cwd)


def median(values: list[float]) -> float:
    return statistics.median(values)


def line(label: str, ours: float, floor: float, target: float) -> None:
    ratio = ours / floor
    verdict = "ok" if ratio <= target else "OVER TARGET"
    print(
        f"{label:<44} devenv {ours * 1000:8.1f} ms   floor {floor * 1000:8.1f} ms   ratio {ratio:5.2f}  "
        f"(target <= {target}) {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()

    client = connect()
    ensure_base(client, load_recipe("cpu"))
    work = Path(tempfile.mkdtemp(prefix="devenv-bench-", dir="/tmp"))
    spec = copy_template("minimal", work / "project", project_name="bench-up")
    spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false"))
    project = open_project(spec)
    lock_project(client, project)
    image = build_project(client, project).tag
    daemon = Devenvd()
    daemon.start()
    env, cwd = daemon.env, spec.parent
    try:
        # 1. warm up + exec, against docker run -d + docker exec
        ours, floor = [], []
        for i in range(args.rounds):
            name = f"bench-up-{i}"
            floor_name = f"bench-floor-{i}"
            floor.append(
                timed(
                    lambda n=floor_name: (
                        run("docker", "run", "-d", "--name", n, image),
                        run("docker", "exec", n, "true"),
                    )
                )
            )
            ours.append(
                timed(
                    lambda n=name: (
                        run("devenv", "up", "--name", n, env=env, cwd=cwd),
                        run("devenv", "exec", n, "--", "true", env=env),
                    )
                )
            )
            run("docker", "rm", "-f", floor_name)
        line("warm up -> exec true (median)", median(ours), median(floor), 1.5)
        floor_up = floor

        # 2. start of a stopped workspace + exec, against docker start + docker exec
        ours, floor = [], []
        run("docker", "run", "-d", "--name", "bench-floor-start", image)
        for _ in range(args.rounds):
            run("docker", "stop", "bench-floor-start")
            floor.append(
                timed(
                    lambda: (
                        run("docker", "start", "bench-floor-start"),
                        run("docker", "exec", "bench-floor-start", "true"),
                    )
                )
            )
            run("devenv", "stop", "bench-up-0", env=env)
            ours.append(
                timed(
                    lambda: (
                        run("devenv", "start", "bench-up-0", env=env),
                        run("devenv", "exec", "bench-up-0", "--", "true", env=env),
                    )
                )
            )
        run("docker", "rm", "-f", "bench-floor-start")
        line("start (stopped) -> exec true (median)", median(ours), median(floor), 1.5)

        # 1b/2b. the same through the client library in this process: the daemon's own overhead,
        # without the two interpreter starts the CLI pays
        api = daemon.client
        upload = collect_project(spec)
        ours, ours_start = [], []
        for i in range(args.rounds):
            name = f"bench-api-{i}"
            ours.append(timed(lambda n=name: (list(api.up(upload, name=n)), list(api.exec(n, ["true"])))))
            list(api.stop(name))
            ours_start.append(timed(lambda n=name: (list(api.start(n)), list(api.exec(n, ["true"])))))
            list(api.remove(name))
        line("  in-process client: up -> exec true", median(ours), median(floor_up), 1.5)
        line("  in-process client: start -> exec true", median(ours_start), median(floor), 1.5)

        for i in range(args.rounds):
            run("devenv", "rm", f"bench-up-{i}", env=env)
    finally:
        daemon.cleanup()

    # 3. a store with many records: the API and `devenv ls`
    crowded = Devenvd(env={"DEVENV_RECONCILE_INTERVAL": "5"})
    crowded.start()  # migrates the store
    crowded.stop()
    crowded.add_stopped_records([f"ws-{i:05d}" for i in range(args.records)])
    crowded.start()
    try:
        api = crowded.client
        api.workspaces()
        latencies = sorted(timed(api.workspaces) for _ in range(500))
        p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
        print(
            f"GET /v1/workspaces, {args.records} records     p50 {p50 * 1000:6.2f} ms (target 10)   "
            f"p99 {p99 * 1000:6.2f} ms (target 50)"
        )
        env = crowded.env
        ls = median([timed(lambda: run("devenv", "ls", env=env)) for _ in range(10)])
        ps = median([timed(lambda: run("docker", "ps")) for _ in range(10)])
        line(f"devenv ls ({args.records} records) vs docker ps", ls, ps, 3.0)
    finally:
        crowded.stop()
        shutil.rmtree(crowded.home, ignore_errors=True)

    helps = sorted(timed(lambda: run("devenv", "--help")) for _ in range(10))
    print(f"devenv --help                                median {median(helps) * 1000:6.1f} ms (target < 300)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
