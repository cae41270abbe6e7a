"""`devenv ssh WS [-- ARGS]`: the real OpenSSH client, with a short-lived certificate from the daemon.

The key is the caller's (`--identity`, else ~/.ssh/id_ed25519) or a devenv key made once. The
certificate is kept beside devenv's state and renewed without a prompt when less than five minutes
of it are left, so agent and port forwarding, scp-style options and everything else of `ssh` work
as usual: this command ends by becoming `ssh`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import click

from devenv import paths
from devenv.cli.clicktools import PATH, WORDS_SETTINGS, argument, command
from devenv.client import Client
from devenv.errors import ToolMissing, UsageError

RENEW_BEFORE = 300  # seconds: a certificate with less left than this is replaced


def ssh_dir() -> Path:
    folder = paths.home_dir() / "ssh"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def identity(chosen: Path | None) -> Path:
    """The private key to use: the chosen one, the person's usual ed25519 key, or devenv's own."""
    if chosen is not None:
        if not chosen.is_file() or not chosen.with_name(chosen.name + ".pub").is_file():
            raise UsageError(f"--identity {chosen}: needs the private key and {chosen.name}.pub beside it")
        return chosen
    usual = Path.home() / ".ssh" / "id_ed25519"
    if usual.is_file() and usual.with_name("id_ed25519.pub").is_file():
        return usual
    own = ssh_dir() / "id_ed25519"
    if not own.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devenv", "-f", str(own)], check=True)
    return own


def certificate(client: Client, workspace: str, key: Path) -> tuple[Path, dict[str, object]]:
    """A certificate for `key` on `workspace`, from the cache while it has time left, else fresh."""
    folder = ssh_dir()
    cert_path, meta_path = folder / f"{workspace}-cert.pub", folder / f"{workspace}.json"
    public = key.with_name(key.name + ".pub").read_text()
    if meta_path.exists() and cert_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("public_key") == public.strip() and float(meta["valid_before"]) - time.time() > RENEW_BEFORE:
            return cert_path, meta
    answer = client.ssh_certificate(workspace, public)
    cert_path.write_text(str(answer["certificate"]) + "\n")
    meta = {key_: answer[key_] for key_ in ("valid_before", "host", "port", "user", "principal")}
    meta["public_key"] = public.strip()
    meta_path.write_text(json.dumps(meta))
    return cert_path, meta


@command("ssh", context_settings=WORDS_SETTINGS)
@argument("name", help="workspace")
@argument("args", nargs=-1, type=click.UNPROCESSED,
          help="ssh options, then `--` and a remote command (with no `--`: all of it is the command)")
@click.option("--identity", "-i", "chosen", type=PATH, help="private key (default: ~/.ssh/id_ed25519, "
                                                          "else a devenv key)")
def ssh(name: str, args: tuple[str, ...], chosen: Path | None) -> None:
    """Open an SSH session (or run a command) in a workspace, as dev, with a short-lived certificate.

    devenv's own options come before the workspace: `devenv ssh -i KEY WS -L 8888:localhost:8888 -- htop`.
    """
    program = shutil.which("ssh")
    if program is None:
        raise ToolMissing("ssh is not installed", hint="install OpenSSH's client (Debian: openssh-client)")
    key = identity(chosen)
    client = Client()
    ws = client.workspace(name)
    if ws["state"] != "running" or not ws.get("ssh_port"):
        raise UsageError(f"workspace {name} is {ws['state']}" + ("" if ws.get("ssh_port") else " with no SSH port"),
                         hint=f"`devenv start {name}` first")
    cert, meta = certificate(client, name, key)
    words = list(args)
    if "--" in words:  # ssh options before `--`, the remote command after it
        options, remote = words[: words.index("--")], words[words.index("--") + 1:]
    else:
        options, remote = [], words
    # Each container makes its own host keys: pinned per container, the first one accepted (a rebuilt
    # workspace is a new container, so a new entry, not a "host key changed" refusal)
    alias = f"devenv-{name}-{str(ws.get('container_id') or '')[:12]}"
    command = [program, "-i", str(key), "-o", f"CertificateFile={cert}", "-o", "IdentitiesOnly=yes",
               "-o", f"HostKeyAlias={alias}", "-o", f"UserKnownHostsFile={ssh_dir() / 'known_hosts'}",
               "-o", "StrictHostKeyChecking=accept-new", "-p", str(ws["ssh_port"]), *options,
               f"{meta['user']}@{meta['host']}", *remote]
    os.execv(program, command)
