"""A real terminal for tests and benchmarks of the TUI: a private tmux server with one 80x24 pane.

Keys go in with `send-keys`, the screen comes back as text with `capture-pane`. The pane stays after
its command exits (remain-on-exit), so a crash leaves its traceback on screen to read.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

SIZE = (80, 24)


def tmux_socket(name: str) -> Path:
    """Where `tmux -L name` keeps its socket (kill-server leaves it behind)."""
    return Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / name


def terminal_env(env: dict[str, str]) -> dict[str, str]:
    """COLUMNS/LINES would override the pane's real size (shutil.get_terminal_size reads them first)."""
    return {key: value for key, value in env.items() if key not in ("COLUMNS", "LINES")}


class Terminal:
    """One private tmux server (its own socket, no user config) running one command in an 80x24 pane."""

    def __init__(self, folder: Path) -> None:
        self.socket = f"dvt-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.config = folder / f"{self.socket}.conf"
        self.config.write_text("set -g status off\nset -g remain-on-exit on\n")  # the pane is the whole 80x24

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.config), *args],
            env=env,
            text=True,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout

    def start(self, argv: list[str], *, env: dict[str, str], cwd: Path | None = None) -> None:
        env = terminal_env(env)
        # -e as well: the pane must talk to the test's daemon, never autostart one in the default home
        pinned = [arg for key, value in env.items() if key.startswith("DEVENV_") for arg in ("-e", f"{key}={value}")]
        self.tmux(
            "new-session",
            "-d",
            "-x",
            str(SIZE[0]),
            "-y",
            str(SIZE[1]),
            "-c",
            str(cwd or Path.cwd()),
            *pinned,
            "exec " + shlex.join(argv),
            env=env,
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        """tmux key names: "n", "Tab", "C-u", "C-s", "Enter"."""
        self.tmux("send-keys", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def pid(self) -> int:
        return int(self.tmux("display-message", "-p", "#{pane_pid}").strip())

    def dead(self) -> bool:
        return self.tmux("display-message", "-p", "#{pane_dead}").strip() == "1"

    def wait(
        self,
        condition: Callable[[str], bool],
        what: str,
        timeout: float,
        *,
        log: Callable[[], str] = lambda: "",
        every: float = 0.2,
    ) -> str:
        """The first screen on which `condition` holds; fails with the last screen (and a daemon's log)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            if self.dead():
                break
            time.sleep(every)
        raise AssertionError(
            f"timed out waiting for {what} ({timeout:.0f}s); the terminal shows:\n{screen}\n--- daemon log ---\n{log()}"
        )

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False, timeout=30)
        self.config.unlink(missing_ok=True)
        tmux_socket(self.socket).unlink(missing_ok=True)
