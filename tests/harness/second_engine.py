"""A second, empty, real Docker engine for tests, that is also an SSH host: dockerd in a privileged container.

The test SSH hosts (harness.ssh_host) reach this machine's own engine, so shipping the base to an engine
that lacks it, or building one lock on two engines, never happened for real. This harness runs Debian's docker.io
(dockerd, containerd, runc, iptables: the same packages as this machine's engine) and sshd in one privileged
container built FROM the locally bootstrapped CPU base. Topology:

    test process --unix socket--> <socket_dir>/docker.sock  (a host folder bind-mounted at /run/engine2)
                 --ssh-----------> sshd in "devenv-it-engine2-<suffix>" (own IP on a network of the same name)
                                      `-- dockerd (/var/run/docker.sock too), data root on the volume of the same name

No registry can be reached, so the packages come as .debs fetched by this machine's apt (`apt-get install
--download-only` against the base's own dpkg status, so exactly the missing dependencies) and `dpkg -i`ed in a
build with no network. The image is tagged by a hash of its inputs (base id, Dockerfile, entrypoint, package
names) and built once. /var/lib/docker is a Docker volume, not the container's own root, so the inner dockerd
gets a real ext4 directory and picks overlay2 (on a container's overlay root it would fall back to vfs).

sshd and dockerd share the container's network namespace, as on a real host: the inner engine's bridges (and
the workspaces on them) are reachable from sshd, so SSH tunnels to a workspace address work without the
network-joining trick ssh_host.py needs. Login user `op` joins the sockets' group. `remove()` deletes the
container, its volume (every image and container of the inner engine), its network and the socket folder,
and raises if any of them is still listed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from devenv.build.base import ensure_base, load_recipe
from harness.ssh_host import LOGIN_SETUP, USER, SshDockerHost, _client, _make_identity, sshd_config

LABELS = {"devenv-test": "second-engine"}
PREFIX = "devenv-it-engine2-"
PACKAGES = ("docker.io", "containerd", "runc", "iptables")  # dockerd's own needs; the base has tini and sshd
SOCKET_MOUNT = "/run/engine2"
# --privileged asks runc for every capability, and this machine's engine (its own bounding set lacks
# CAP_SYS_RESOURCE) then fails every start with "unable to apply caps: operation not permitted". So the
# container gets each capability Docker 20.10 knows that this machine has, and no seccomp or masked /proc paths.
CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
)  # numbers 0..37, in order

ENTRYPOINT = (
    """\
#!/bin/sh
# Runs under tini at every container start: user, keys, then dockerd in the background and sshd in front.
set -eu
group="$(getent group "$SOCKET_GROUP" | cut -d: -f1 || true)"
if [ -z "$group" ]; then groupadd --gid "$SOCKET_GROUP" engine-socket; group=engine-socket; fi
"""
    + LOGIN_SETUP
    + """\
# Not --privileged (see CAPS), so /sys and the cgroup v1 hierarchies come read-only: the inner engine makes its
# containers' cgroups below this container's own, so those are made writable (bind remounts, nothing new).
mount -o remount,rw /sys
if [ -d /sys/fs/cgroup/memory ]; then
    for hierarchy in /sys/fs/cgroup/*; do mount -o remount,bind,rw "$hierarchy"; done
else
    mount -o remount,rw /sys/fs/cgroup
fi
# The inner bridges get the MTU of the link out, as the outer engine's do (a VM's may be under 1500).
mtu="$(cat /sys/class/net/eth0/mtu)"
dockerd --host unix:///var/run/docker.sock --host unix:///run/engine2/docker.sock --group "$group" \\
    --data-root /var/lib/docker --mtu "$mtu" &
exec /usr/sbin/sshd -D -e
"""
)

SSHD_CONFIG = sshd_config(USER)


def _dockerfile(base: str) -> str:
    return (
        f"FROM {base}\n"
        "COPY debs/ /tmp/debs/\n"
        # policy-rc.d: the packages' scripts must not try to start services during the build
        "RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
        " && DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/debs/*.deb"
        " && rm -rf /tmp/debs /usr/sbin/policy-rc.d\n"
        "COPY sshd.conf /etc/ssh/sshd_config.d/00-devenv-test.conf\n"
        "COPY entrypoint.sh /usr/local/sbin/engine2-entrypoint\n"
        "VOLUME /var/lib/docker\n"
        "EXPOSE 22\n"
        'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/sbin/engine2-entrypoint"]\n'
    )


def _capabilities() -> list[str]:
    """CAPABILITIES less those outside this process's bounding set (the local engine's, on this machine)."""
    bounding = 0
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        bounding = int(next(line for line in status if line.startswith("CapBnd:")).split()[1], 16)
    return [name for number, name in enumerate(CAPABILITIES) if not bounding or bounding >> number & 1]


def _say(message: str) -> None:
    print(f"[second engine] {message}", file=sys.stderr, flush=True)


def _base_dpkg_status(client: docker.DockerClient, base: str) -> bytes:
    """The base image's /var/lib/dpkg/status, read from a created (never started) container."""
    created = client.api.create_container(base, command=["true"], labels=LABELS)
    try:
        chunks, _ = client.api.get_archive(created["Id"], "/var/lib/dpkg/status")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            member = archive.extractfile("status")
            if member is None:
                raise RuntimeError(f"{base} has no /var/lib/dpkg/status")
            return member.read()
    finally:
        client.api.remove_container(created["Id"], force=True)


def _download_debs(status: bytes, folder: Path) -> list[Path]:
    """PACKAGES and whatever they need that the base lacks, as .debs, by this machine's apt (no install)."""
    (folder / "partial").mkdir(parents=True, exist_ok=True)
    status_file = folder / "dpkg-status"
    status_file.write_bytes(status)
    command = [
        "apt-get",
        "install",
        "--yes",
        "--download-only",
        "--no-install-recommends",
        "-o",
        f"Dir::State::status={status_file}",
        "-o",
        f"Dir::Cache::archives={folder}",
        "-o",
        "Debug::NoLocking=1",
        *PACKAGES,
    ]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=600)
    debs = sorted(folder.glob("*.deb"))
    if ran.returncode != 0 or not debs:
        raise RuntimeError(
            f"`{' '.join(command)}` exited {ran.returncode} with {len(debs)} .debs (this machine's "
            f"apt must reach a Debian mirror or have them cached):\n{ran.stderr[-2000:]}"
        )
    return debs


def ensure_image() -> str:
    """The engine image's tag, built once: the tag hashes the base's id, the scripts and the package names."""
    client = _client()
    recipe = load_recipe("cpu")
    base = ensure_base(client, recipe)
    scripts = {
        "Dockerfile": (_dockerfile(recipe.image_tag), 0o644),
        "sshd.conf": (SSHD_CONFIG, 0o644),
        "entrypoint.sh": (ENTRYPOINT, 0o755),
    }
    inputs = repr((base.digest, sorted(scripts.items()), PACKAGES)).encode()
    tag = "devenv-test/second-engine:" + hashlib.sha256(inputs).hexdigest()[:12]
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="devenv-engine2-debs-") as scratch:
        _say(f"building {tag} FROM {recipe.image_tag} (once): fetching {', '.join(PACKAGES)} with apt")
        debs = _download_debs(_base_dpkg_status(client, recipe.image_tag), Path(scratch))
        _say(
            f"{len(debs)} .debs ({sum(deb.stat().st_size for deb in debs) / 1e6:.0f} MB): "
            + " ".join(deb.name.split("_")[0] for deb in debs)
        )
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, (text, mode) in scripts.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(text.encode()), mode
                archive.addfile(info, io.BytesIO(text.encode()))
            for deb in debs:
                archive.add(deb, arcname=f"debs/{deb.name}")
        buffer.seek(0)
        for answer in client.api.build(
            fileobj=buffer,
            custom_context=True,
            tag=tag,
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
            labels=LABELS,
            decode=True,
        ):
            if answer.get("error"):
                raise RuntimeError(f"building {tag} failed: {answer['error']}")
            line = str(answer.get("stream") or "").strip()
            if line.startswith("Step "):
                _say(line)
    _say(f"built {tag} in {time.monotonic() - began:.0f}s")
    return tag


@dataclass
class SecondEngine(SshDockerHost):
    """The engine container as an SSH host (url, identity, fingerprint(), ssh_env()... from SshDockerHost), plus
    what only this harness has: the engine's own socket on this machine, its volume and its network."""

    volume: str = ""
    network: str = ""
    socket_dir: Path = Path()
    images_at_start: tuple[str, ...] = ()  # what the engine listed once it first answered (all=True)
    seconds_to_start: float = 0.0

    @property
    def socket(self) -> Path:
        return self.socket_dir / "docker.sock"

    @property
    def docker_url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: int = 300) -> docker.DockerClient:
        """A new SDK client for the second engine (the caller closes it)."""
        return docker.DockerClient(base_url=self.docker_url, timeout=timeout)

    def logs_tail(self, lines: int = 40) -> str:
        """The container's last output lines: dockerd's log and sshd's, interleaved."""
        with contextlib.suppress(docker.errors.NotFound):
            return self._container().logs(tail=lines).decode(errors="replace")
        return "(the container is gone)"

    def wait_engine(self, timeout: float = 120) -> None:
        """Until the inner dockerd answers a ping on the host-side socket; its log tail when it does not."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            container = self._container()
            if container.status not in ("created", "running"):
                raise RuntimeError(f"{self.name} is {container.status}; its log:\n{self.logs_tail()}")
            if self.socket.exists():
                engine = self.client(timeout=5)
                try:
                    engine.ping()
                    return
                except docker.errors.DockerException as error:
                    last = error
                finally:
                    engine.close()
            time.sleep(0.2)
        raise TimeoutError(
            f"dockerd in {self.name} did not answer on {self.socket} within {timeout}s "
            f"(last: {last}); its log:\n{self.logs_tail()}"
        )

    def leftovers(self) -> list[str]:
        """What of this engine the outer engine still lists (by name; the label covers strays of a crash)."""
        api = _client().api
        found = [f"container {c['Names'][0]}" for c in api.containers(all=True, filters={"name": f"^/{self.name}$"})]
        found += [
            f"volume {v['Name']}"
            for v in (api.volumes(filters={"name": self.volume}).get("Volumes") or [])
            if v["Name"] == self.volume
        ]
        found += [f"network {n['Name']}" for n in api.networks(names=[self.network]) if n["Name"] == self.network]
        if self.socket_dir.exists():
            found.append(f"folder {self.socket_dir}")
        return found

    def remove(self) -> None:
        """Container, volume (the inner engine's images and containers), network and socket folder; raises
        if any is still there after."""
        api = _client().api
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(self.name, force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_volume(self.volume, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(self.network)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        left = self.leftovers()
        if left:
            raise RuntimeError(f"removing {self.name} left: {', '.join(left)}")


def start_second_engine(suffix: str | None = None, *, workdir: Path | None = None) -> SecondEngine:
    """A new, empty engine `devenv-it-engine2-<suffix>` (random suffix by default), once both its dockerd and its
    sshd answer. The key pair lives in `workdir` (a new temp dir by default); a leftover of the same name goes."""
    client = _client()
    name = PREFIX + (suffix or uuid.uuid4().hex[:8])
    image = ensure_image()
    began = time.monotonic()
    socket_dir = Path(tempfile.mkdtemp(prefix="devenv-engine2-"))
    engine = SecondEngine(
        name,
        "",
        USER,
        _make_identity(Path(workdir or tempfile.mkdtemp(prefix=name + "-"))),
        "",
        volume=name,
        network=name,
        socket_dir=socket_dir,
    )
    with contextlib.suppress(RuntimeError):
        engine.remove()  # a leftover of an interrupted run with the same name
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        api = client.api
        api.create_network(name, driver="bridge", labels=LABELS)
        api.create_volume(name, labels=LABELS)
        gid = os.getegid()
        host_config = api.create_host_config(
            cap_add=_capabilities(),
            security_opt=["seccomp=unconfined"],
            network_mode=name,
            binds={
                name: {"bind": "/var/lib/docker", "mode": "rw"},
                str(socket_dir): {"bind": SOCKET_MOUNT, "mode": "rw"},
            },
        )
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])  # `--security-opt systempaths=unconfined`
        created = api.create_container(
            image,
            name=name,
            hostname=name,
            labels=LABELS,
            host_config=host_config,
            environment={
                "SOCKET_GROUP": str(gid) if gid else "docker",
                "AUTHORIZED_KEY": engine.identity.with_suffix(".pub").read_text().strip(),
            },
        )
        engine.container_id = created["Id"]
        api.start(created["Id"])
        engine.address = api.inspect_container(created["Id"])["NetworkSettings"]["Networks"][name]["IPAddress"]
        engine.wait_engine()
        engine.wait_ready()
        with contextlib.closing(engine.client()) as inner:
            engine.images_at_start = tuple(str(image.id) for image in inner.images.list(all=True))
    except BaseException:
        with contextlib.suppress(Exception):
            _say(f"{name} did not come up; its log:\n{engine.logs_tail()}")
        engine.remove()
        raise
    engine.seconds_to_start = time.monotonic() - began
    _say(f"{name} up at {engine.address} in {engine.seconds_to_start:.1f}s ({engine.docker_url})")
    return engine


def remove_all_second_engines() -> None:
    """Every container, volume and network labelled devenv-test=second-engine (strays of interrupted runs)."""
    api = _client().api
    for found in api.containers(all=True, filters={"label": "devenv-test=second-engine"}):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(found["Id"], force=True, v=True)
    for volume in api.volumes(filters={"label": "devenv-test=second-engine"}).get("Volumes") or []:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_volume(volume["Name"], force=True)
    for network in api.networks(filters={"label": "devenv-test=second-engine"}):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(network["Id"])
