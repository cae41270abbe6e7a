"""A real "Docker host over SSH" for tests: an sshd container with its own IP that reaches a Docker engine.

No registry can be reached from the test machines, so the host image is built FROM the locally bootstrapped
CPU base (which ships openssh-server and tini) with no package installs. Topology:

    test process --ssh--> sshd in container "devenv-it-host-a" (fixed IP on the `devenv-it-hosts` network)
                              |-- /usr/local/bin/docker (this machine's static CLI, bind-mounted read-only)
                              `-- /var/run/docker.sock  (this machine's engine, bind-mounted)

The image has no docker CLI of its own (none can be installed offline), so the CLI is bind-mounted: the SDK's
ssh:// transport and `docker -H ssh://` both run `docker system dial-stdio` on the remote, and here that is a
real dial-stdio talking to this machine's engine. Login user `op` joins a group with the socket's gid, read at
fixture time and created by the entrypoint, so one image works whatever gid the engine's host uses.

The dedicated network gives each host a fixed address that survives `docker stop`/`docker start`. Each workspace
created through a host has a network of its own, and Docker drops traffic between two bridges (its
DOCKER-ISOLATION chains), so from `devenv-it-hosts` the host could not reach them. A real host reaches every bridge
of its engine from its own network namespace; this one gets the same by joining each workspace network made
through a host (labelled devenv.role=network, devenv.backend not "local"), at start and as `docker events` reports
them, with its own `docker`. SSH `direct-tcpip` channels from the host then reach the workspace; workspaces stay
unable to reach one another, and the backend disconnects the host when it removes the network.

sshd serves only its ed25519 key, so `fingerprint()` and `known_hosts_line()` describe the one key a client sees.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from devenv.build.base import ensure_base, load_recipe

LABELS = {"devenv-test": "ssh-host"}
NETWORK = "devenv-it-hosts"
SUBNET_POOL = ipaddress.ip_network("172.31.240.0/20")  # a /24 in here that no docker network overlaps
FIRST_HOST_OFFSET = 10  # host index 0 gets .10 of the network's subnet
USER, UID = "op", 2000
DOCKER_SOCKET = "/var/run/docker.sock"


def sshd_config(user: str) -> str:
    """A test host's sshd: `user` alone, by key alone, its ed25519 host key alone (fingerprint() describes it)."""
    return f"""\
# Read before the rest of sshd_config (Include comes first there): first value wins.
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
PermitRootLogin no
UsePAM no
AllowTcpForwarding yes
AllowUsers {user}
HostKey /etc/ssh/ssh_host_ed25519_key
"""


SSHD_CONFIG = sshd_config(USER)

# Shell, after `$group` names the engine socket's group: the login user `op` in it, with the key in
# $AUTHORIZED_KEY, and sshd's host keys and run folder (each host harness's entrypoint starts with it).
LOGIN_SETUP = """\
if ! id op >/dev/null 2>&1; then
    useradd --uid 2000 --user-group --create-home --shell /bin/bash --groups "$group" op
    usermod --password '*' op  # '!' (locked) would make sshd refuse even key logins without PAM
fi
install -d -m 700 -o op -g op /home/op/.ssh
printf '%s\\n' "$AUTHORIZED_KEY" > /home/op/.ssh/authorized_keys
chown op:op /home/op/.ssh/authorized_keys && chmod 600 /home/op/.ssh/authorized_keys
ssh-keygen -A
mkdir -p /run/sshd
"""

ENTRYPOINT = (
    """\
#!/bin/sh
# Runs under tini at every container start; makes the user and host keys only when missing.
set -eu
group="$(getent group "$DOCKER_GID" | cut -d: -f1 || true)"
if [ -z "$group" ]; then groupadd --gid "$DOCKER_GID" docker-engine; group=docker-engine; fi
"""
    + LOGIN_SETUP
    + """\
# Join devenv's workspace networks made through a host, those there now and each one made later.
join() {
    format='{{index .Labels "devenv.role"}} {{index .Labels "devenv.backend"}}'
    labels="$(docker network inspect --format "$format" "$1" 2>/dev/null)" || return 0
    case "$labels" in
        "network local" | "network ") return 0 ;;
        "network "*) docker network connect "$1" "$HOST_CONTAINER" >/dev/null 2>&1 || true ;;
    esac
}
join_workspace_networks() {
    while true; do
        since="$(date +%s)"
        for net in $(docker network ls --quiet --filter label=devenv.role=network); do join "$net"; done
        docker events --since "$since" --filter type=network --filter event=create --format '{{.Actor.ID}}' |
            while read -r net; do join "$net"; done
        sleep 1
    done
}
(set +eu; join_workspace_networks) &
exec /usr/sbin/sshd -D -e
"""
)


def _dockerfile(base: str) -> str:
    return (
        f"FROM {base}\n"
        "COPY sshd.conf /etc/ssh/sshd_config.d/00-devenv-test.conf\n"
        "COPY entrypoint.sh /usr/local/sbin/ssh-host-entrypoint\n"
        "EXPOSE 22\n"
        'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/sbin/ssh-host-entrypoint"]\n'
    )


@functools.cache
def _client() -> docker.DockerClient:
    return docker.from_env()


def _tar(files: dict[str, tuple[str, int]]) -> bytes:
    """An uncompressed tar of {path: (text, mode)}, owned by root: a build context or a put_archive payload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_image() -> str:
    """The host image's tag, built once: the tag hashes the whole context, so a change makes a new image."""
    client = _client()
    recipe = load_recipe("cpu")
    ensure_base(client, recipe)
    files = {
        "Dockerfile": (_dockerfile(recipe.image_tag), 0o644),
        "sshd.conf": (SSHD_CONFIG, 0o644),
        "entrypoint.sh": (ENTRYPOINT, 0o755),
    }
    tag = "devenv-test/ssh-host:" + hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:12]
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        client.images.build(
            fileobj=io.BytesIO(_tar(files)), custom_context=True, tag=tag, pull=False, rm=True, labels=LABELS
        )
    return tag


def ensure_network() -> ipaddress.IPv4Network:
    """The hosts' network (made if missing, else reused as found) and its subnet."""
    client = _client()
    try:
        network = client.networks.get(NETWORK)
    except docker.errors.NotFound:
        taken = [
            ipaddress.ip_network(config["Subnet"], strict=False)
            for found in client.api.networks()
            for config in ((found.get("IPAM") or {}).get("Config") or [])
            if config.get("Subnet")
        ]
        subnet = next(
            (
                candidate
                for candidate in SUBNET_POOL.subnets(new_prefix=24)
                if not any(candidate.overlaps(other) for other in taken)
            ),
            None,
        )
        if subnet is None:
            raise RuntimeError(f"every /24 of {SUBNET_POOL} overlaps an existing docker network") from None
        pool = docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))
        network = client.networks.create(
            NETWORK, driver="bridge", labels=LABELS, ipam=docker.types.IPAMConfig(pool_configs=[pool])
        )
    return next(
        ipaddress.IPv4Network(config["Subnet"]) for config in network.attrs["IPAM"]["Config"] if "." in config["Subnet"]
    )


@dataclass
class SshDockerHost:
    name: str
    address: str
    user: str
    identity: Path
    container_id: str

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.address}:22"

    def _container(self) -> Container:
        return _client().containers.get(self.container_id)

    def run(self, command: str) -> str:
        """`sh -c command` as root in the container (docker exec, not ssh); stdout. Raises on a non-zero exit."""
        code, output = self._container().exec_run(["sh", "-c", command], user="root", demux=True)
        out, err = cast(tuple[bytes | None, bytes | None], output)  # demux's pair: types-docker leaves it out
        if code != 0:
            raise RuntimeError(f"{command!r} in {self.name} exited {code}: {(err or b'').decode(errors='replace')}")
        return (out or b"").decode()

    def put_file(self, path: str, content: str, mode: int = 0o755) -> None:
        """Write a root-owned file (parents made as needed), e.g. a fake `nvidia-smi` on the remote's PATH."""
        self._container().put_archive("/", _tar({path: (content, mode)}))

    def host_public_key(self) -> str:
        """ "ssh-ed25519 AAAA...": the key sshd serves, without the comment."""
        return " ".join(self.run("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2])

    def fingerprint(self) -> str:
        """ "SHA256:..." as `ssh-keygen -lf` prints it: unpadded base64 of the key blob's SHA-256."""
        blob = base64.b64decode(self.host_public_key().split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    def known_hosts_line(self) -> str:
        return f"{self.address} {self.host_public_key()}"

    def wait_ready(self, timeout: float = 30) -> None:
        """Until sshd sends its banner: a mere TCP accept could come from a listener about to go away."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.address, 22), timeout=2) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
            container = self._container()
            if container.status not in ("created", "running"):
                raise RuntimeError(f"{self.name} is {container.status}; its log:\n{container.logs(tail=30).decode()}")
            time.sleep(0.1)
        logs = self._container().logs(tail=30).decode(errors="replace")
        raise TimeoutError(f"sshd in {self.name} did not answer on {self.address}:22 within {timeout}s:\n{logs}")

    def stop(self) -> None:
        """docker stop: the address stops answering (refused, unreachable or timing out)."""
        self._container().stop(timeout=5)

    def start(self) -> None:
        """docker start again: same filesystem (so same host key) and the same fixed address."""
        container = self._container()
        container.start()
        container.reload()
        found = container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        if found != self.address:
            raise RuntimeError(f"{self.name} came back at {found}, not {self.address}")
        self.wait_ready()

    def rekey(self) -> None:
        """A "reinstalled" host: new host keys, and sshd restarted (with the container) to serve them."""
        self.run("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A")
        self._container().restart(timeout=5)
        self.wait_ready()

    def restart(self) -> None:
        """Restart the container, so sshd (re)reads its host keys; same address, same filesystem."""
        self._container().restart(timeout=5)
        self.wait_ready()

    def is_running(self) -> bool:
        return self._container().status == "running"

    def install_host_key(self, private: str, public: str) -> None:
        """Make `private`/`public` the ed25519 host key, as cloud-init's `ssh_keys` does; served from the next
        start or restart(). Works on a stopped container too. The entrypoint's `ssh-keygen -A` only makes
        missing keys, so an installed key survives every later start."""
        self._container().put_archive(
            "/",
            _tar(
                {
                    "/etc/ssh/ssh_host_ed25519_key": (private.rstrip("\n") + "\n", 0o600),
                    "/etc/ssh/ssh_host_ed25519_key.pub": (public.strip() + "\n", 0o644),
                }
            ),
        )

    def authorize(self, public_keys: list[str]) -> None:
        """Let `public_keys` log in as op besides the fixture's own key, across stops and starts; replaces the
        keys an earlier call authorized. Works on a stopped container once it has started once (~op exists).

        They go to ~op/.ssh/authorized_keys2, which sshd reads too (OpenSSH's default AuthorizedKeysFile): the
        entrypoint rewrites authorized_keys from the fixture's key at every start. Root-owned 0644 passes
        StrictModes, and sshd reads the file as op."""
        text = "".join(key.strip() + "\n" for key in public_keys)
        self._container().put_archive("/", _tar({f"/home/{self.user}/.ssh/authorized_keys2": (text, 0o644)}))

    def ssh_env(self, home: Path) -> dict[str, str]:
        """os.environ with HOME=home, where `ssh ADDRESS` and `docker -H URL` log in with the pinned host key.

        OpenSSH reads ~/.ssh/config from the passwd entry, not $HOME, so an `ssh` wrapper passing `-F` goes
        first on PATH (the docker CLI runs `ssh` from PATH). Paramiko honours HOME and reads the same files.
        Other hosts' entries in home are kept, so one home can serve several hosts.
        """
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        known, config, wrapper = ssh_dir / "known_hosts", ssh_dir / "config", home / "bin" / "ssh"
        lines = known.read_text().splitlines() if known.exists() else []
        lines = [line for line in lines if not line.startswith(f"{self.address} ")] + [self.known_hosts_line()]
        known.write_text("\n".join(lines) + "\n")
        text = config.read_text() if config.exists() else ""
        text = re.sub(rf"^Host {re.escape(self.address)}\n(?:[ \t]+\S.*\n)*\n?", "", text, flags=re.MULTILINE)
        config.write_text(
            text + f"Host {self.address}\n    User {self.user}\n    Port 22\n"
            f"    IdentityFile {self.identity}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known}\n    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n    ConnectTimeout 10\n\n"
        )
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh") or "/usr/bin/ssh"} -F "{config}" "$@"\n')
        wrapper.chmod(0o755)
        return {**os.environ, "HOME": str(home), "PATH": f"{wrapper.parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._container().remove(force=True, v=True)


def _make_identity(workdir: Path) -> Path:
    key = workdir / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devenv-test", "-f", str(key)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return key


def start_ssh_host(name: str, *, index: int = 0, workdir: Path | None = None) -> SshDockerHost:
    """A new host container `name` at the index-th fixed address, once sshd answers. A leftover container of
    the same name is replaced; the key pair lives in `workdir` (a new temp dir by default)."""
    client = _client()
    image, subnet = ensure_image(), ensure_network()
    address = str(subnet[FIRST_HOST_OFFSET + index])
    with_name = client.containers.list(all=True, filters={"name": f"^/{name}$"})
    for leftover in with_name:
        leftover.remove(force=True, v=True)
    for holder in client.networks.get(NETWORK).attrs.get("Containers", {}).values():
        if holder["IPv4Address"].split("/")[0] == address:
            raise RuntimeError(f"{address} on {NETWORK} is taken by {holder['Name']}; pick another index")
    identity = _make_identity(Path(workdir or tempfile.mkdtemp(prefix="devenv-ssh-host-")))
    docker_cli = os.path.realpath(shutil.which("docker") or "/usr/local/bin/docker")
    api = client.api
    created = api.create_container(
        image,
        name=name,
        hostname=name,
        labels=LABELS,
        environment={
            "DOCKER_GID": str(os.stat(DOCKER_SOCKET).st_gid),
            "HOST_CONTAINER": name,
            "AUTHORIZED_KEY": identity.with_suffix(".pub").read_text().strip(),
        },
        host_config=api.create_host_config(
            binds={
                DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
                docker_cli: {"bind": "/usr/local/bin/docker", "mode": "ro"},
            }
        ),
        # by network name, as the SDK documents: types-docker types the argument as one EndpointConfig
        networking_config=api.create_networking_config({NETWORK: api.create_endpoint_config(ipv4_address=address)}),  # type: ignore[arg-type]
    )
    host = SshDockerHost(name, address, USER, identity, created["Id"])
    try:
        api.start(created["Id"])
        host.wait_ready()
    except BaseException:
        host.remove()
        raise
    return host


def remove_all_ssh_hosts() -> None:
    """Every container labelled devenv-test=ssh-host, running or not (the network is left for reuse)."""
    for container in _client().containers.list(all=True, filters={"label": "devenv-test=ssh-host"}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
