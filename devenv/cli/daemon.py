"""`devenv daemon status|stop|logs` and `devenv login|logout`: reaching and managing the daemon."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from devenv import paths
from devenv.cli.clicktools import Group, argument, command
from devenv.client import Client, Target, parse_target
from devenv.errors import DaemonUnreachable, UsageError

app = Group("daemon", no_args_is_help=True, help="Manage the local daemon (devenvd).")


@app.command()
def status() -> None:
    """Whether the daemon answers, where, and its version and pid (exit 1 when it does not)."""
    client = Client(autostart=False)
    try:
        health = client.health()
        actor = client.whoami()
    except DaemonUnreachable as error:
        print(f"not running: {error.message}")
        raise click.exceptions.Exit(1) from None
    print(f"running: devenvd {health['version']} (pid {health['pid']}) at {client.target.describe()}, you are {actor}")
    if health.get("web_url"):
        print(f"JupyterLab proxy: {health['web_url']}/jupyter/WORKSPACE/ (`devenv jupyter WORKSPACE`)")


@app.command()
def stop() -> None:
    """Stop the daemon; workspaces keep running and are adopted when it starts again."""
    client = Client(autostart=False)
    try:
        client.shutdown()
    except DaemonUnreachable:
        print("not running")
        return
    if client.target.local:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                client.health()
            except DaemonUnreachable:
                break
            time.sleep(0.1)
    print("stopped")


@app.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing")
@click.option("--lines", "-n", default=50, help="how many last lines")
def logs(follow: bool, lines: int) -> None:
    """The local daemon's log."""
    path = paths.daemon_log_path()
    if not path.exists():
        raise UsageError(f"no daemon log at {path} (the daemon never ran with this DEVENV_HOME)")
    with open(path, errors="replace") as handle:
        for line in handle.readlines()[-lines:]:
            sys.stdout.write(line)
        sys.stdout.flush()
        while follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)


@command()
@argument("url", help="the daemon, like tcp://team-server:8765")
@click.option(
    "--token",
    required=True,
    prompt=True,
    hide_input=True,
    envvar="DEVENV_TOKEN",
    show_envvar=True,
    help="a token from `devenvd token create NAME`",
)
def login(url: str, token: str) -> None:
    """Use a remote daemon from now on (checks the token, then saves URL and token, mode 0600)."""
    target = parse_target(url, token)
    actor = Client(target, autostart=False).whoami()
    path = paths.login_path()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(path, 0o600)
    print(f"logged in to {Target.describe(target)} as {actor}")


@command()
def logout() -> None:
    """Forget the saved remote daemon; use the local one again."""
    paths.login_path().unlink(missing_ok=True)
    print("logged out: using the local daemon")
