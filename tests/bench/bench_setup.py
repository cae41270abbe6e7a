"""Setup figures for issue 7, each against a floor measured in the same run.

    python tests/bench/bench_setup.py [--rounds 5]

1. First setup: the clone (token through the credential helper) and the DVC pull that `devenv up`
   runs in a new workspace, from the events' timestamps  vs  the same `git clone` and `dvc pull`
   typed by hand in an identical fresh container (`docker exec`, token in the URL).
2. A restart: `devenv start` of a stopped workspace with repo, data and secrets (secrets placed,
   pins written, clone checked, facts read)  vs  `docker start` + `docker exec true`.
3. `devenv status WS` (live git facts) and `devenv snapshot WS` wall times.

Every command is the real CLI against a real devenvd and the real engine. Not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command
from harness.versioning_world import GIT_TOKEN, VersioningWorld

DEVENV = devenv_command()


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as tmp, VersioningWorld(Path(tmp), client) as world:
        daemon = Devenvd(home=Path(tmp) / "home")
        world.allow_in(daemon.home)
        daemon.start()
        try:
            env = daemon.env
            for name, value in {"GIT_TOKEN": GIT_TOKEN, "API_SECRET": "x", "WANDB_API_KEY": "0" * 40}.items():
                daemon.cli("secret", "set", name, input=value, check=True)
            project = world.project(world.dir_project, Path(tmp) / "p", "bench-setup")
            daemon.cli("up", cwd=project, check=True)
            events = daemon.client.events("bench-setup", limit=500)
            at = {event["message"].split(" ")[0]: event["at"] for event in events if event["kind"] == "setup"}
            starting = next(e["at"] for e in events if e["kind"] == "state" and e["message"].endswith("-> starting"))
            running = next(e["at"] for e in events if e["kind"] == "state" and e["message"].endswith("-> running"))
            clone_and_pull = at["pulled"] - starting  # container start, secrets, env, clone, pull
            setup_total = running - starting

            # the floor: the same clone and pull by hand, in a fresh container of the same image
            image = daemon.client.workspace("bench-setup")["image"]
            url = world.dir_repo.url.replace("http://", f"http://git:{GIT_TOKEN}@")
            script = (
                f"git clone -q {url} proj && cd proj && dvc remote add --local -f r {world.remote_dir} "
                f"&& dvc pull -q -r r data -R"
            )
            hand = []
            for _ in range(rounds):
                container = client.containers.run(
                    image,
                    ["sleep", "infinity"],
                    detach=True,
                    user="dev",
                    working_dir="/home/dev",
                    extra_hosts={"host.docker.internal": "host-gateway"},
                    volumes={str(world.remote_dir): {"bind": str(world.remote_dir), "mode": "rw"}},
                )
                try:
                    started = time.perf_counter()
                    container.start()
                    code, output = container.exec_run(["bash", "-c", script])
                    hand.append(time.perf_counter() - started)
                    assert code == 0, output
                finally:
                    container.remove(force=True)

            restart, floor = [], []
            for _ in range(rounds):
                daemon.cli("stop", "bench-setup", check=True)
                restart.append(
                    timed([DEVENV, "start", "bench-setup"], env)
                    + timed([DEVENV, "exec", "bench-setup", "--", "true"], env)
                )
            # the floor: a container of the same image, with the same services, started by hand
            container = client.containers.create(
                image, environment={"DEVENV_WORKSPACE": "bench-floor"}, ports={"22/tcp": ("127.0.0.1", None)}
            )
            try:
                for _ in range(rounds):
                    started = time.perf_counter()
                    container.start()
                    container.exec_run(["true"])
                    floor.append(time.perf_counter() - started)
                    container.stop(timeout=10)
            finally:
                container.remove(force=True)
            status = [timed([DEVENV, "status", "bench-setup"], env) for _ in range(rounds)]
            snapshot = [timed([DEVENV, "snapshot", "bench-setup"], env) for _ in range(rounds)]
        finally:
            daemon.cleanup()

    print(f"first setup (start, secrets, clone, pull) {clone_and_pull:.2f} s; up to running {setup_total:.2f} s")
    print(
        f"  floor: container start + git clone + dvc pull by hand, median {median(hand):.2f} s"
        f"  ratio {clone_and_pull / median(hand):.2f}"
    )
    print(f"restart with setup: devenv start + exec, median {median(restart):.2f} s")
    ratio = median(restart) / median(floor)
    print(f"  floor: docker start + exec true, median {median(floor):.2f} s  ratio {ratio:.2f}")
    print(f"devenv status (live git facts), median {median(status) * 1000:.0f} ms")
    print(f"devenv snapshot, median {median(snapshot) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
