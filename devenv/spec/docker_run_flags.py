"""The `docker run` flags runArgs may hold: reading them as docker does, and what devenv thinks of
each one it has no setting for.

Kept apart from devcontainer_runargs.py, which maps the flags devenv has a setting for onto the spec:
this is docker's vocabulary (short forms, which flags take a value), and the reasons a flag is
refused (it would weaken the isolation between a workspace and its host) or not needed (devenv sets
it itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_FLAG_SPACE_RE = re.compile(r"(-{1,2}[A-Za-z][A-Za-z0-9-]*)\s+(\S.*)", re.DOTALL)

_SHORT = {
    "e": "env",
    "m": "memory",
    "v": "volume",
    "p": "publish",
    "u": "user",
    "w": "workdir",
    "h": "hostname",
    "l": "label",
    "c": "cpu-shares",
    "a": "attach",
}
_SHORT_BOOL = {"d": "detach", "i": "interactive", "t": "tty", "P": "publish-all", "q": "quiet"}
_BOOL = frozenset(
    {
        "detach",
        "init",
        "interactive",
        "tty",
        "privileged",
        "publish-all",
        "read-only",
        "rm",
        "quiet",
        "oom-kill-disable",
        "no-healthcheck",
        "sig-proxy",
        "disable-content-trust",
        "help",
    }
)
HOST_PATHS = (
    "host paths stay out of a workspace (it sees its home volume, the project and data:); "
    "a daemon admin may list a folder under allowed_host_folders for a data: remote"
)
REFUSED = {
    "privileged": "it hands the container every host device and capability: a workspace could take over its host",
    "cap-add": "extra kernel capabilities let a workspace reach past its container; workspaces keep Docker's "
    "default set",
    "security-opt": "it loosens the seccomp/AppArmor confinement every workspace keeps",
    "network": "a workspace has its own network (host networking would expose the host's services); list ports "
    "under ports:",
    "net": "a workspace has its own network; list ports under ports:",
    "pid": "sharing the host's process namespace lets a workspace see and signal host processes",
    "uts": "the hostname namespace stays the workspace's own",
    **dict.fromkeys(("userns", "cgroupns"), "the namespaces are the engine's to set"),
    **dict.fromkeys(
        ("device", "device-cgroup-rule"), "it opens host devices to the container; ask GPUs with resources.gpu"
    ),
    **dict.fromkeys(("volume", "mount", "volumes-from"), HOST_PATHS),
    "sysctl": "kernel parameters are the host's to set",
    "group-add": "extra groups (like docker) grant host resources",
    "env-file": "it reads a file on the developer's host; put the variables under env:, or in secrets",
    **dict.fromkeys(
        ("add-host", "dns", "dns-search", "dns-option", "ip", "ip6", "mac-address", "network-alias", "link"),
        "the network is devenv's to set up",
    ),
}
MANAGED = {
    "name": "devenv names the container after the workspace",
    "hostname": "devenv names the container",
    "rm": "devenv keeps the container until `devenv rm`",
    "detach": "devenv runs workspaces in the background",
    "interactive": "shells come through `devenv ssh`",
    "tty": "shells come through `devenv ssh`",
    "init": "the base image runs tini as PID 1",
    "user": "workspaces run as the user dev",
    "workdir": "hooks and shells start in the project's folder",
    "entrypoint": "the base image's entrypoint starts sshd and JupyterLab",
    "restart": "the daemon restarts what should run",
    "label": "devenv labels its containers",
    "runtime": "GPUs come with resources.gpu",
    "platform": "the lock pins the engine's architecture",
    "log-driver": "the engine's logging is used",
    "log-opt": "the engine's logging is used",
    "publish-all": "ports listed under ports: are published",
    "cap-drop": "workspaces keep Docker's default capabilities",
    "pull": "devenv builds the image",
    "attach": "`devenv up` streams the output",
    "stop-signal": "devenv stops workspaces itself",
    "stop-timeout": "devenv stops workspaces itself",
}
_VALUED = frozenset(
    {
        *(set(REFUSED) | set(MANAGED)) - _BOOL,
        "gpus",
        "shm-size",
        "cpus",
        "memory",
        "ulimit",
        "ipc",
        "env",
        "publish",
        "expose",
        "cpu-shares",
        "cpuset-cpus",
        "cpuset-mems",
        "cpu-period",
        "cpu-quota",
        "memory-swap",
        "memory-reservation",
        "memory-swappiness",
        "kernel-memory",
        "pids-limit",
        "oom-score-adj",
        "blkio-weight",
        "storage-opt",
        "tmpfs",
        "label-file",
        "health-cmd",
        "health-interval",
        "health-retries",
        "health-timeout",
        "health-start-period",
        "isolation",
        "cidfile",
        "annotation",
        "cgroup-parent",
    }
)


def split_runargs(value: list[Any]) -> list[str]:
    """runArgs as docker reads them, plus the common slip of one entry holding "--flag value"."""
    tokens: list[str] = []
    for item in value:
        text = str(item).strip()
        match = _FLAG_SPACE_RE.fullmatch(text)
        tokens.extend([match.group(1), match.group(2).strip()] if match else [text])
    return tokens


def parse_flags(tokens: list[str], warn: Callable[[str], None]) -> list[tuple[str, str | None, str]]:
    """(long flag name, its value or None, as written) for each flag; stray words are warned."""
    flags: list[tuple[str, str | None, str]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if not eq and (
                name in _VALUED or (name not in _BOOL and index < len(tokens) and not tokens[index].startswith("-"))
            ):
                value = tokens[index] if index < len(tokens) else ""
                index += 1
            flags.append((name, value if (eq or name not in _BOOL) else None, token))
        elif token.startswith("-") and len(token) > 1:
            letters = token[1:]
            while letters and letters[0] in _SHORT_BOOL:  # -it, -d
                flags.append((_SHORT_BOOL[letters[0]], None, token))
                letters = letters[1:]
            if not letters:
                continue
            name = _SHORT.get(letters[0], letters[0])
            value = letters[1:].removeprefix("=")
            if not value:
                value = tokens[index] if index < len(tokens) else ""
                index += 1
            flags.append((name, value, token))
        else:
            warn(f"runArgs {token!r} not imported: not a docker run flag")
    return flags
