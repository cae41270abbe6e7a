"""A real devenvd process in its own DEVENV_HOME, and the real `devenv` CLI run against it.

Integration tests and benchmarks use this: nothing is faked, the daemon talks to the real engine.
Homes live under /tmp with short names (a unix socket path holds at most 107 bytes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devenv.client import Client, Target
from devenv.errors import DaemonUnreachable


def devenv_command() -> str:
    """The installed `devenv` script beside this interpreter (not a version manager's shim on PATH)."""
    beside = Path(sys.executable).parent / "devenv"
    return str(beside) if beside.exists() else (shutil.which("devenv") or "devenv")


class Devenvd:
    def __init__(self, *, env: dict[str, str] | None = None, home: Path | None = None) -> None:
        self.home = home or Path(tempfile.mkdtemp(prefix="dvd-", dir="/tmp"))
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("DEVENV_")}
        env.update({"DEVENV_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "200"}, **self.extra_env)
        if "DEVENV_CACHE_DIR" in os.environ:
            env["DEVENV_CACHE_DIR"] = os.environ["DEVENV_CACHE_DIR"]
        return env

    @property
    def client(self) -> Client:
        return Client(Target(socket=str(self.home / "devenvd.sock")), autostart=False)

    def start(self, *, args: list[str] | None = None, timeout: float = 30.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = open(self.home / "devenvd.log", "ab")  # noqa: SIM115 - the daemon owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devenv.daemon.process.main", *(args or [])],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(DaemonUnreachable):
                self.client.health()
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"devenvd did not start:\n{self.log_tail()}")

    def add_stopped_records(self, names: list[str]) -> None:
        """Stopped workspace records straight into a stopped daemon's store (migrated on a first start),
        for benchmarks that need thousands of them and no containers."""
        import datetime as dt
        import sqlite3

        now = dt.datetime.now(dt.UTC).isoformat(sep=" ")
        with sqlite3.connect(self.home / "devenv.db") as db:
            db.executemany(
                "insert into workspaces (name, owner, backend, desired, state, generation, ports, keep_volume, "
                "ever_ran, recreate, volume_existed, created_at, updated_at, image_tag) "
                "values (?, 'bench', 'local', 'stopped', 'stopped', 1, '[]', 0, 1, 0, 0, ?, ?, 'devenv/bench:0')",
                [(name, now, now) for name in names],
            )

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        path = self.home / "devenvd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def token(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`devenvd token ARGS...` on this daemon's home, as an admin on its machine runs it."""
        return subprocess.run(
            [sys.executable, "-m", "devenv.daemon.process.main", "token", *args],
            env=self.env,
            text=True,
            capture_output=True,
            timeout=60,
        )

    def cli(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = False,
        timeout: float = 600,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `devenv` console script against this daemon (`env`: more variables for the CLI only)."""
        result = subprocess.run(
            [devenv_command(), *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            text=True,
            capture_output=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"devenv {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n"
                f"{result.stderr}\n--- daemon log ---\n{self.log_tail()}"
            )
        return result

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [devenv_command(), *args], cwd=cwd, env=self.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def workspaces(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.cli("ls", "--all", "--json", check=True).stdout)
        return {item["name"]: item for item in items}

    def wait_for(self, name: str, state: str, *, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen = self.workspaces().get(name, {})
            if seen.get("state") == state:
                return seen
            time.sleep(0.5)
        raise AssertionError(f"{name} did not become {state} in {timeout:.0f}s (last: {seen})\n{self.log_tail()}")

    def cleanup(self) -> None:
        """Remove every workspace this daemon knows (containers and volumes), then stop it."""
        with contextlib.suppress(Exception):
            self.client.health()  # not started again to clean up: `devenv ls` would start one that outlives the test
            for name in self.workspaces():
                self.cli("rm", name, timeout=120)
        self.stop()
        pid_file = self.home / "devenvd.pid"
        if self.process is None and pid_file.exists():  # a daemon the CLI started on its own, if still held
            with open(pid_file) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    with contextlib.suppress(ValueError, OSError):
                        os.kill(int(handle.read().strip()), signal.SIGTERM)
        shutil.rmtree(self.home, ignore_errors=True)
