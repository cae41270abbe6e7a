"""Running one command in a built image, as the `dev` user, and returning its exit code.

This is the one-shot path (`devenv run`) that proves an image works; long-lived workspaces with
home volumes, sshd and JupyterLab are the daemon's job.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient


def run_once(
    client: DockerClient,
    image: str,
    command: list[str],
    *,
    network: bool = True,
    out: BinaryIO | None = None,
    err: BinaryIO | None = None,
) -> int:
    """Run `command` in a fresh container of `image`, stream its output, remove it, return its exit code."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    with engine_errors(f"running a command in {image}"):
        container = client.containers.create(
            image,
            command,
            user="dev",
            working_dir="/home/dev",
            network_mode=None if network else "none",
            labels={"devenv.one-shot": "true"},
        )
        try:
            # attached before it starts, as `docker run` does: an attach made after a quick command has exited
            # could wait for output that never comes (seen once: `exit 3` hung 15 minutes on a busy engine)
            output = container.attach(stream=True, logs=True, demux=True)
            container.start()
            for stdout, stderr in output:
                if stdout:
                    out.write(stdout)
                    out.flush()
                if stderr:
                    err.write(stderr)
                    err.flush()
            return int(container.wait().get("StatusCode", 1))
        finally:
            container.remove(force=True)
