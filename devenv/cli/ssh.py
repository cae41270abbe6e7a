"""`devenv ssh WS` and `devenv ssh-config`: the real OpenSSH client, with short-lived certificates.

The key is the caller's (`--identity`, else ~/.ssh/id_ed25519) or a devenv key made once. The
certificate is kept beside devenv's state and renewed without a prompt when less than five minutes
of it are left, so agent and port forwarding, scp-style options and everything else of `ssh` work
as usual: `devenv ssh` ends by becoming `ssh`. Workspaces prove themselves with host certificates
from devenv's host CA, so a rebuilt workspace (new host key) is accepted without a prompt.

`devenv ssh-config` makes plain `ssh WS.devenv`, scp and VS Code Remote-SSH do the same: one
`Include` line at the top of ~/.ssh/config, and devenv's own file with a `Host *.devenv` block
(ProxyCommand through devenv) and a `Match exec` hook that renews the certificate when it is due.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from devenv.cli.clicktools import PATH, WORDS_SETTINGS, argument, command
from devenv.cli.ssh_proxy import SUFFIX, cache_dir, remember_address, renew
from devenv.client import Client
from devenv.errors import ToolMissing, UsageError

INCLUDE_MARK = "# added by `devenv ssh-config`"


def identity(chosen: Path | None) -> Path:
    """The private key to use: the chosen one, the person's usual ed25519 key, or devenv's own."""
    if chosen is not None:
        if not chosen.is_file() or not chosen.with_name(chosen.name + ".pub").is_file():
            raise UsageError(f"--identity {chosen}: needs the private key and {chosen.name}.pub beside it")
        return chosen.resolve()
    usual = Path.home() / ".ssh" / "id_ed25519"
    if usual.is_file() and usual.with_name("id_ed25519.pub").is_file():
        return usual
    own = cache_dir() / "id_ed25519"
    if not own.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devenv", "-f", str(own)], check=True)
    return own


def _ssh_program() -> str:
    program = shutil.which("ssh")
    if program is None:
        raise ToolMissing("ssh is not installed", hint="install OpenSSH's client (Debian: openssh-client)")
    return program


@command("ssh", context_settings=WORDS_SETTINGS)
@argument("name", help="workspace")
@argument(
    "args",
    nargs=-1,
    type=click.UNPROCESSED,
    help="ssh options, then `--` and a remote command (with no `--`: all of it is the command)",
)
@click.option(
    "--identity", "-i", "chosen", type=PATH, help="private key (default: ~/.ssh/id_ed25519, else a devenv key)"
)
def ssh(name: str, args: tuple[str, ...], chosen: Path | None) -> None:
    """Open an SSH session (or run a command) in a workspace, with a short-lived certificate.

    Its owner logs in as dev; someone granted access under a login of their own (dev's uid and home).

    devenv's own options come before the workspace: `devenv ssh -i KEY WS -L 8888:localhost:8888 -- htop`.
    """
    program = _ssh_program()
    key = identity(chosen)
    client = Client()
    ws = client.workspace(name)
    port = ws.get("ssh_port")
    if ws["state"] != "running" or not port:
        raise UsageError(
            f"workspace {name} is {ws['state']}" + ("" if port else " with no SSH port"),
            hint=f"`devenv start {name}` first",
        )
    host = name + SUFFIX
    meta = renew(host, key)
    remember_address(host, str(meta["host"]), int(port))  # for plain `ssh WS.devenv` too
    cert = cache_dir() / f"{host}-cert.pub"
    words = list(args)
    if "--" in words:  # ssh options before `--`, the remote command after it
        options, remote = words[: words.index("--")], words[words.index("--") + 1 :]
    else:
        options, remote = [], words
    # the workspace's host certificate names WS.devenv; known_hosts trusts devenv's host CA for *.devenv
    command = [
        program,
        "-i",
        str(key),
        "-o",
        f"CertificateFile={cert}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"HostKeyAlias={host}",
        "-o",
        f"UserKnownHostsFile={cache_dir() / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-p",
        str(ws["ssh_port"]),
        *options,
        f"{meta['user']}@{meta['host']}",
        *remote,
    ]
    os.execv(program, command)


def config_text(key: Path) -> str:
    """devenv's ssh_config: every `*.devenv` host, through devenv, with a certificate kept fresh."""
    folder = cache_dir()
    python = sys.executable
    for path in (str(folder), python, str(key)):
        if any(char.isspace() or char in "'\"\\" for char in path):
            raise UsageError(
                f"{path}: ssh-config cannot quote a path with spaces or quotes",
                hint="set DEVENV_HOME to a plain path, or pass --identity with a plain path",
            )
    # The hook is a shell test while the certificate has time left (no Python start), devenv otherwise.
    hook = (
        f"[ $(cat {folder}/%n.renew-at 2>/dev/null || echo 0) -gt $(date +%%s) ] 2>/dev/null || "
        f"{python} -m devenv.cli.ssh_proxy --renew %n {key}"
    )
    # The connection: bash's /dev/tcp to the cached address and two cats (milliseconds), else devenv's
    # proxy, which asks the daemon where the workspace is now and refreshes the cache.
    # Only the reader holds ssh's input, so a connection the server closes ends at once for ssh; and
    # when ssh goes away (done, or refusing the host) the reader is ended too: left behind it would
    # hold the connection, and whoever waits on ssh's output, until sshd gives up.
    relay = (
        f"if {{ exec 3<>/dev/tcp/$(cat {folder}/%n.addr 2>/dev/null || echo 0.0.0.0/0); }} 2>/dev/null; "
        f'then cat <&3 & reader=$!; exec >&-; trap "kill $reader 2>/dev/null" EXIT HUP TERM; cat >&3; '
        f"else exec {python} -m devenv.cli.ssh_proxy %n; fi"
    )
    # Each workspace's login (`dev` for its owner, a login of their own for a grantee) is in users.d,
    # written at each renewal; read after the hook, so a renewal that just ran is already in it.
    return "\n".join(
        [
            "# Written by `devenv ssh-config`; rerun it rather than editing this file.",
            f"Match host *{SUFFIX} exec \"/bin/sh -c '{hook}'\"",
            f"Include {folder}/users.d/*.conf",
            f"Host *{SUFFIX}",
            "    User dev",
            f"    ProxyCommand /bin/bash -c '{relay}'",
            f"    IdentityFile {key}",
            f"    CertificateFile {folder}/%n-cert.pub",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {folder}/known_hosts",
            "    StrictHostKeyChecking yes",
            "Match all",
            "",
        ]
    )


def install_config(ssh_config: Path, key: Path) -> tuple[Path, bool]:
    """Write devenv's file and make sure ~/.ssh/config includes it first; returns (file, config changed)."""
    ours = cache_dir() / "ssh_config"
    ours.write_text(config_text(key))
    include = f"Include {ours}"
    ssh_config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    current = ssh_config.read_text() if ssh_config.exists() else ""
    if any(line.split("#", 1)[0].strip() == include for line in current.splitlines()):
        return ours, False
    # First in the file: ssh takes the first value it reads for each option, and an Include before
    # any Host line applies to every host (devenv's file ends with `Match all`, so nothing leaks).
    ssh_config.write_text(f"{include}  {INCLUDE_MARK}\n" + ("\n" if current else "") + current)
    os.chmod(ssh_config, 0o600)
    return ours, True


@command("ssh-config")
@click.option(
    "--identity", "-i", "chosen", type=PATH, help="private key (default: ~/.ssh/id_ed25519, else a devenv key)"
)
@click.option(
    "--config",
    "ssh_config",
    type=PATH,
    default=Path.home() / ".ssh" / "config",
    help="the ssh_config to add devenv's Include to",
)
def ssh_config(chosen: Path | None, ssh_config: Path) -> None:
    """Make plain `ssh WS.devenv`, scp and VS Code Remote-SSH reach workspaces (idempotent)."""
    _ssh_program()
    key = identity(chosen)
    ours, changed = install_config(ssh_config, key)
    where = f"added `Include {ours}` at the top of {ssh_config}" if changed else f"{ssh_config} includes it already"
    click.echo(f"wrote {ours}; {where}")
    click.echo(f"try: ssh WORKSPACE{SUFFIX}")
