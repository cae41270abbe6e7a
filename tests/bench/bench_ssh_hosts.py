"""Figures for Docker hosts over SSH (issue 9), each against a floor measured in the same run.

    python tests/bench/bench_ssh_hosts.py [--rounds 5] [--workspaces 50]

1. Warm `devenv up --on HOST` (image on the host, a new workspace) until `devenv exec WS -- true` answers,
   vs `docker -H ssh://HOST run -d IMAGE` + `docker -H ssh://HOST exec CONTAINER true` of the same image
   on the same host: the docker CLI's own ssh transport. Real CLI, real devenvd, real sshd hosts.
2. Engine calls in one reconciler pass with N workspaces spread over 3 SSH hosts: every HTTP request each
   host's Docker client sends during the pass is counted (target: one list call per host).

The hosts are sshd containers with their own addresses (harness.ssh_host) whose docker reaches this
machine's engine. Not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import docker

from devenv.backends.base import LaunchRequest
from devenv.backends.docker import DockerBackend
from devenv.backends.ssh.known_hosts import KnownHosts
from devenv.backends.ssh.session import SshSession, load_private_key
from devenv.backends.ssh.target import parse_target
from devenv.build.base import ensure_base, load_recipe
from devenv.build.project import build_project, lock_project, open_project
from devenv.testing.projects import copy_template

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command
from harness.ssh_host import SshDockerHost, remove_all_ssh_hosts, start_ssh_host

DEVENV = devenv_command()


def run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def light_project(folder: Path, client: docker.DockerClient) -> tuple[Path, str]:
    spec = copy_template("minimal", folder, project_name="bench-remote")
    spec.write_text(spec.read_text().replace("jupyter: true", "jupyter: false"))
    project = open_project(spec)
    ensure_base(client, load_recipe("cpu"))
    lock_project(client, project)
    return folder, build_project(client, project).tag


def warm_up(host: SshDockerHost, folder: Path, image: str, rounds: int, tmp: Path) -> None:
    daemon = Devenvd(home=tmp / "home")
    daemon.start()
    try:
        daemon.cli(
            "host",
            "add",
            "bench",
            host.url,
            "--identity",
            str(host.identity),
            "--trust",
            host.fingerprint(),
            check=True,
        )
        env = daemon.env
        ours, floor = [], []
        for index in range(rounds):
            name = f"bench-remote-{index}"
            spent = run([DEVENV, "up", "--on", "bench", "--name", name], env, cwd=folder)
            spent += run([DEVENV, "exec", name, "--", "true"], env)
            ours.append(spent)
            daemon.cli("rm", name, check=True)

            cli_env = host.ssh_env(tmp / "cli-home")
            docker_host = ["docker", "-H", host.url]
            started = time.perf_counter()
            container = subprocess.run(
                [*docker_host, "run", "-d", image, "sleep", "infinity"],
                env=cli_env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            subprocess.run([*docker_host, "exec", container, "true"], env=cli_env, check=True)
            floor.append(time.perf_counter() - started)
            subprocess.run([*docker_host, "rm", "-f", container], env=cli_env, capture_output=True, check=True)
        ours_s, floor_s = statistics.median(ours), statistics.median(floor)
        print(
            f"warm up on an ssh host to exec-ready: devenv {ours_s:.2f} s vs docker -H ssh:// run + exec "
            f"{floor_s:.2f} s (median of {rounds}): ratio {ours_s / floor_s:.2f} (target <= 1.5)"
        )
    finally:
        daemon.cleanup()


def calls_per_pass(hosts: list[SshDockerHost], image: str, workspaces: int, tmp: Path) -> None:
    from devenv.daemon.process.server import assemble
    from devenv.daemon.services.backends import BackendEntry, Backends
    from devenv.daemon.store.db import make_engine, migrate, session_factory

    backends: dict[str, DockerBackend] = {}
    counts: Counter[str] = Counter()
    for index, host in enumerate(hosts):
        known = KnownHosts(tmp / "known_hosts", system=tmp / "none")
        session = SshSession(parse_target(host.url), load_private_key(host.identity.read_text()), known)
        session.transport(trust=host.fingerprint())
        backend = DockerBackend(f"h{index}", session=session)
        api: Any = backend.client.api
        original = api.send

        def counting(request: Any, *args: Any, _name: str = backend.name, _send: Any = original, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _send(request, *args, **kwargs)

        api.send = counting
        backends[backend.name] = backend
    engine = make_engine(f"sqlite:///{tmp / 'store.db'}")
    migrate(engine)
    entries = {name: BackendEntry(name, "docker", backend.url, backend) for name, backend in backends.items()}
    daemon = assemble(session_factory(engine), Backends(entries), tmp / "daemon-home")
    names = list(backends)
    try:
        print(f"starting {workspaces} workspace containers on {len(names)} hosts ...", flush=True)
        for index in range(workspaces):
            backend = backends[names[index % len(names)]]
            handle = backend.create(
                LaunchRequest(
                    workspace=f"bench-pass-{index:02d}",
                    owner="bench",
                    image=image,
                    image_hash="bench",
                    ssh=True,
                    jupyter=False,
                    daemon=daemon.converger.daemon_id,
                )
            )
            backend.start(handle)
        daemon.reconciler.run_pass()  # adopts them all
        counts.clear()
        started = time.perf_counter()
        daemon.reconciler.run_pass()
        spent = time.perf_counter() - started
        per_host = {name: counts[name] for name in names}
        print(
            f"engine calls in one reconciler pass, {workspaces} workspaces on {len(names)} hosts: {per_host} "
            f"({sum(per_host.values())} in all, {spent * 1000:.0f} ms; target: 1 list call per host)"
        )
    finally:
        for index in range(workspaces):
            backend = backends[names[index % len(names)]]
            from devenv.backends.base import Handle

            backend.remove(Handle.for_workspace(f"bench-pass-{index:02d}"), keep_volume=False)
        for backend in backends.values():
            backend.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workspaces", type=int, default=50)
    options = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp_name:
        tmp = Path(tmp_name)
        folder, image = light_project(tmp / "project", client)
        hosts = []
        try:
            for index in range(3):
                workdir = tmp / f"host-{index}"
                workdir.mkdir()
                hosts.append(start_ssh_host(f"devenv-bench-host-{index}", index=5 + index, workdir=workdir))
            warm_up(hosts[0], folder, image, options.rounds, tmp)
            calls_per_pass(hosts, image, options.workspaces, tmp)
        finally:
            remove_all_ssh_hosts()


if __name__ == "__main__":
    main()
