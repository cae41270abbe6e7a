"""Revocation figures for issue 17: from the revoke API call until each of a grantee's channels is closed.

    python tests/bench/bench_revoke.py [--rounds 5]

Each round grants alice SSH and JupyterLab, and she starts, over SSH and over `devenv exec`, a
`nohup` sleep, a setsid'd double-forked one and an `env -i` one, keeps an SSH session and an exec
stream open, and in her JupyterLab (through the proxy) opens a kernel, which starts a setsid'd
double-forked sleep, and a terminal, which starts a `nohup` one. Then the revoke, timed until: her
SSH session closes, her exec stream ends, her kernel and terminal websockets close, and `ps` inside
the container (as root) shows no process holding her groups. Real devenvd, image, OpenSSH and
JupyterLab; it prints medians and the worst round, nothing asserts on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker

from devenv.backends.base import container_name
from devenv.client import Client, Target
from devenv.testing.projects import built_minimal_project

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command
from harness.jupyter import ProxyLab, run_in_kernel

WS = "bench-revoke"
NO_AGENT = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}
DETACHED = (
    "nohup sleep 701 >/dev/null 2>&1 & setsid sh -c '(sleep 702 >/dev/null 2>&1 &)'; "
    "env -i /bin/sleep 703 >/dev/null 2>&1 & echo started"
)


def run(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr}")
    return result.stdout


def marked(container: object, gids: set[int]) -> bool:
    """Whether any process in the container holds one of `gids` (ps as root)."""
    output = container.exec_run(["ps", "-eo", "supgid:200="], user="root").output.decode()  # type: ignore[attr-defined]
    return any(gids & {int(gid) for gid in line.strip().split(",") if gid.isdigit()} for line in output.splitlines())


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures as they come
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    spec = built_minimal_project(WS)
    work = spec.parent.parent
    daemon = Devenvd(env={"DEVENV_ACCESS_INTERVAL": "0.5"})
    daemon.start()
    env = {**NO_AGENT, **daemon.env}
    local = Client(Target(socket=str(daemon.home / "devenvd.sock")), autostart=False)
    try:
        subprocess.run([devenv_command(), "up"], cwd=spec.parent, env=env, check=True, capture_output=True)
        container = docker.from_env().containers.get(container_name(WS))
        token = run(
            [sys.executable, "-m", "devenv.daemon.process.main", "token", "create", "alice"], daemon.env
        ).strip()
        alice = {
            **env,
            "DEVENV_HOME": str(work / "alice"),
            "DEVENV_TOKEN": token,
            "DEVENV_HOST": str(local.health()["web_url"]),
        }
        key = work / "alice_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        ssh = [devenv_command(), "ssh", "-i", str(key), WS, "-o", "BatchMode=yes", "--"]
        figures: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            local.grant(WS, "alice", ssh=True, jupyter=True)
            deadline = time.monotonic() + 60
            while subprocess.run([*ssh, "true"], env=alice, capture_output=True).returncode != 0:
                if time.monotonic() > deadline:
                    raise SystemExit("alice's ssh never worked")
                time.sleep(0.3)
            run([*ssh, DETACHED], alice)
            run([devenv_command(), "exec", WS, "--", "sh", "-c", DETACHED], alice)
            session = subprocess.Popen(
                [*ssh, "sleep 704"], env=alice, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            stream = subprocess.Popen(
                [devenv_command(), "exec", WS, "--", "sleep", "705"],
                env=alice,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            link = run([devenv_command(), "jupyter", WS, "--no-browser"], alice).splitlines()[0]
            lab = ProxyLab(link, WS)
            _kernel, kernel_socket = lab.kernel()
            run_in_kernel(
                kernel_socket,
                "import subprocess\nsubprocess.Popen(['setsid', 'sh', '-c', '(sleep 706 >/dev/null 2>&1 &)'])",
            )
            _terminal, terminal_socket = lab.terminal("nohup sleep 707 >/dev/null 2>&1 &")
            while not all(
                f"sleep 70{n}".encode() in container.exec_run(["ps", "-eo", "args"]).output for n in range(1, 8)
            ):
                time.sleep(0.1)
            login = json.loads((work / "alice" / "ssh" / f"{WS}.devenv.json").read_text())["user"]
            groups = container.exec_run(["getent", "group", login, f"{login}-j"]).output.decode()
            gids = {int(line.split(":")[2]) for line in groups.splitlines()}
            closed: dict[str, float] = {}

            def watch(
                name: str, wait: Callable[[], object], started: float, into: dict[str, float] = closed
            ) -> threading.Thread:
                def body() -> None:
                    with contextlib.suppress(Exception):
                        wait()
                    into[name] = time.perf_counter() - started

                return threading.Thread(target=body, daemon=True)

            def drain(socket: object) -> Callable[[], None]:
                def read() -> None:
                    while True:
                        socket.recv(timeout=60)  # type: ignore[attr-defined]

                return read

            started = time.perf_counter()
            watchers = [
                watch("ssh session", lambda s=session: s.wait(60), started),
                watch("exec stream", lambda s=stream: s.wait(60), started),
                watch("kernel websocket", drain(kernel_socket), started),
                watch("terminal websocket", drain(terminal_socket), started),
            ]
            for thread in watchers:
                thread.start()
            local.revoke(WS, "alice")
            closed["revoke answered"] = time.perf_counter() - started
            while marked(container, gids) and time.perf_counter() - started < 30:
                time.sleep(0.02)
            closed["no process of hers left (ps)"] = time.perf_counter() - started
            for thread in watchers:
                thread.join(30)
            lab.close()
            for name, seconds in closed.items():
                figures.setdefault(name, []).append(seconds)
        print(f"revoke -> closed, over {args.rounds} rounds (median, worst):")
        for name, values in sorted(figures.items(), key=lambda item: statistics.median(item[1])):
            print(f"  {name:32} {statistics.median(values):6.2f} s {max(values):6.2f} s")
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    main()
