"""A real Slurm cluster on this machine's Docker engine, for the slurm backend's tests (issue 21).

Debian 12's slurm-wlm (22.05) and munge, not a fake: the backend must meet the scheduler HPC sites run.
Topology, all on the user-defined network `devenv-it-slurm-net`:

    test process --ssh -p PORT--> devenv-it-slurm-ctl    slurmctld + munged + sshd (the login node; port 22
                                  |                      published on 127.0.0.1, key made by the harness)
                                  |-- devenv-it-slurm-node1   slurmd + munged, one fake GPU /dev/nvidia0
                                  `-- devenv-it-slurm-node2   slurmd + munged, one fake GPU /dev/nvidia0
    volume devenv-it-slurm-shared at /shared on all three: homes and image archives (/shared/alice is alice's)

The fake GPU is a character device made with mknod (NVIDIA's major 195), declared in gres.conf and as
`Gres=gpu:1` in slurm.conf: a node whose declared count does not match its device files goes `inval`. No driver
stands behind it, so open() tells the two cases apart: ENXIO where the job's device cgroup allows it,
EPERM where task/cgroup's ConstrainDevices denies it. Nodes run privileged with a private cgroup namespace,
so slurmd's cgroup plugins (proctrack/cgroup, task/cgroup) manage a hierarchy of their own and the two
nodes do not share one `slurm` cgroup; podman in a job needs the same privileges.

Not `--privileged`: this engine's own bounding set lacks CAP_SYS_RESOURCE, so runc fails a privileged start
with "unable to apply caps: operation not permitted". Nodes get what privileged would give, spelled out:
every other capability, no seccomp filter, unmasked /proc, every device allowed, and (in the entrypoint)
writable cgroup mounts.

No registry can be reached from the test machines; Debian's mirrors can. The node image is the local CPU
base plus Debian packages, tagged with a hash of its Dockerfile so it is built once and reused. Config files
and the munge key are not in the image: they are written into each container before it starts, so a config
change needs no rebuild and every cluster gets its own munge key.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import cast

import docker
import docker.errors
from docker.models.containers import Container

from devenv.build.base import ensure_base, load_recipe
from harness.ssh_host import sshd_config

PREFIX = "devenv-it-slurm-"
LABELS = {"devenv-test": "slurm-cluster"}
NETWORK = PREFIX + "net"
VOLUME = PREFIX + "shared"
CONTROLLER = PREFIX + "ctl"
NODES = (PREFIX + "node1", PREFIX + "node2")
SHARED = "/shared"
USER, UID = "alice", 2000  # the base already has dev (1000), the workspace user
PARTITION = "gpu"
GPU_DEVICE = "/dev/nvidia0"

PACKAGES = (
    "slurmctld",
    "slurmd",
    "slurm-client",
    "munge",
    "openssh-server",
    "podman",
    "crun",
    "uidmap",
    "fuse-overlayfs",
    "slirp4netns",
    "containernetworking-plugins",
    "iproute2",
    "procps",
)

ENTRYPOINT = """\
#!/bin/sh
# Runs under tini: `controller` or `node`. slurm.conf, gres.conf, cgroup.conf and the munge key were put in
# place by the harness before the first start.
set -eu
role="$1"
# Docker mounts a container's cgroup hierarchies read-only unless --privileged (which this engine refuses:
# see CAPABILITIES). Fresh mounts in the container's private cgroup namespace are writable and rooted at the
# container's own cgroup, so slurmd's cgroup plugins (and podman) get a hierarchy of their own.
awk '$3 == "cgroup" || $3 == "cgroup2" {print $2, $3, $4}' /proc/self/mounts | while read -r dir kind opts; do
    case "$opts" in rw,*) continue ;; esac
    keep="$(echo "$opts" | tr , '\n' | grep -Ev '^(ro|rw|nosuid|nodev|noexec|relatime)$' | paste -sd, -)"
    umount "$dir" && mount -t "$kind" -o "rw${keep:+,$keep}" "$kind" "$dir"
done
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
mkdir -p /var/spool/slurmctld /var/spool/slurmd
case "$role" in
controller)
    install -d -o alice -g alice -m 0755 /shared/alice
    install -d -o alice -g alice -m 0700 /home/alice/.ssh
    install -o alice -g alice -m 0600 /etc/devenv-it/authorized_keys /home/alice/.ssh/authorized_keys
    ssh-keygen -A >/dev/null
    mkdir -p /run/sshd
    /usr/sbin/sshd
    exec /usr/sbin/slurmctld -D
    ;;
node)
    mount --make-rshared /  # else rootless podman warns that "/" is not a shared mount
    # the fake GPU: one device file per declared GPU, or the GRES count mismatches and the node goes inval
    [ -e /dev/nvidia0 ] || mknod -m 0666 /dev/nvidia0 c 195 0
    exec /usr/sbin/slurmd -D
    ;;
esac
echo "unknown role $role" >&2
exit 2
"""

SSHD_CONFIG = sshd_config(USER)

SLURM_CONF = f"""\
ClusterName=devenvit
SlurmctldHost={CONTROLLER}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmctldDebug=info
SlurmdDebug=info
NodeName={PREFIX}node[1-2] CPUs=2 RealMemory=1024 Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

GRES_CONF = f"NodeName={PREFIX}node[1-2] Name=gpu File={GPU_DEVICE}\n"

CGROUP_CONF = """\
ConstrainDevices=yes
ConstrainCores=no
ConstrainRAMSpace=no
"""

# Rootless podman in a job: no systemd in the nodes (cgroupfs, events to a file), and vfs storage, since
# overlay cannot stack on the fuse-overlayfs root this engine gives containers.
STORAGE_CONF = """\
[storage]
driver = "vfs"
"""
CONTAINERS_CONF = """\
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


# Every capability Docker 20.10 knows except SYS_RESOURCE (absent from this engine's bounding set).
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
)


def _dockerfile(base: str) -> str:
    return (
        f"FROM {base}\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        f"{' '.join(PACKAGES)} && rm -rf /var/lib/apt/lists/*\n"
        f"RUN useradd --uid {UID} --user-group --create-home --shell /bin/bash {USER}"
        f" && usermod --password '*' {USER}"
        # useradd gives the user subordinate ids (login.defs), which rootless podman needs; a second
        # overlapping range would make newuidmap fail ("write to uid_map failed: Invalid argument")
        f" && grep -q '^{USER}:' /etc/subuid && grep -q '^{USER}:' /etc/subgid\n"
        "COPY entrypoint.sh /usr/local/sbin/slurm-node-entrypoint\n"
        'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/sbin/slurm-node-entrypoint"]\n'
    )


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """An uncompressed tar of {path: (content, mode)}, owned by root: a build context or a put_archive payload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_image(client: docker.DockerClient, progress: Callable[[str], None] = print) -> str:
    """The node image's tag, built once: the tag hashes the whole context (base tag included)."""
    recipe = load_recipe("cpu")
    ensure_base(client, recipe)
    files = {
        "Dockerfile": (_dockerfile(recipe.image_tag).encode(), 0o644),
        "entrypoint.sh": (ENTRYPOINT.encode(), 0o755),
    }
    tag = "devenv-it/slurm-node:" + hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:12]
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    progress(f"building {tag} (Debian's slurm-wlm, munge, podman: a few minutes the first time)")
    started = time.monotonic()
    for chunk in client.api.build(
        fileobj=io.BytesIO(_tar(files)),
        custom_context=True,
        tag=tag,
        pull=False,
        rm=True,
        forcerm=True,
        labels=LABELS,
        decode=True,
    ):
        if "error" in chunk:
            raise RuntimeError(f"building {tag}: {chunk['error']}")
        line = str(chunk.get("stream", "")).strip()
        if line.startswith(("Step ", "Setting up slurm", "Setting up munge", "Setting up podman")):
            progress(f"  {line}")
    client.images.get(tag)  # raises if the build ended without an image
    progress(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


@dataclass
class SlurmCluster:
    """Controller/login node and two 1-GPU compute nodes; `with SlurmCluster(workdir) as cluster:` starts and
    removes everything (containers, volume, network) whatever happens in between."""

    workdir: Path
    client: docker.DockerClient = field(default_factory=docker.from_env)
    progress: Callable[[str], None] = print
    ssh_port: int = 0
    identity: Path = field(init=False)
    known_hosts: Path = field(init=False)
    start_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.identity = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()

    # ---- bring-up -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        """Build (once) and start the cluster; returns when sshd answers and both nodes are idle in sinfo."""
        image = ensure_image(self.client, self.progress)
        started = time.monotonic()
        self.remove()  # leftovers of a killed run
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.identity.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devenv-it-slurm", "-f", str(self.identity)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        self.client.networks.create(NETWORK, driver="bridge", labels=LABELS)
        self.client.volumes.create(VOLUME, labels=LABELS)
        munge_key = secrets.token_bytes(1024)
        configs = {
            "/etc/slurm/slurm.conf": (SLURM_CONF.encode(), 0o644),
            "/etc/slurm/gres.conf": (GRES_CONF.encode(), 0o644),
            "/etc/slurm/cgroup.conf": (CGROUP_CONF.encode(), 0o644),
            "/etc/munge/munge.key": (munge_key, 0o400),
            "/etc/containers/storage.conf": (STORAGE_CONF.encode(), 0o644),
            "/etc/containers/containers.conf": (CONTAINERS_CONF.encode(), 0o644),
        }
        login = {
            "/etc/ssh/sshd_config.d/00-devenv-it.conf": (SSHD_CONFIG.encode(), 0o644),
            "/etc/devenv-it/authorized_keys": (self.identity.with_suffix(".pub").read_bytes(), 0o644),
        }
        self._create(image, CONTROLLER, "controller", {**configs, **login}, publish_ssh=True)
        for node in NODES:
            self._create(image, node, "node", configs, publish_ssh=False)
        for name in (CONTROLLER, *NODES):
            self._container(name).start()
        controller = self._container(CONTROLLER)
        controller.reload()
        self.ssh_port = int(controller.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        self._wait_ssh(started + timeout)
        self.known_hosts.write_text(
            f"[127.0.0.1]:{self.ssh_port} {self.exec(CONTROLLER, 'cat /etc/ssh/ssh_host_ed25519_key.pub')}"
        )
        self._wait_idle(started + timeout)
        self.start_seconds = time.monotonic() - started
        self.progress(
            f"slurm cluster up in {self.start_seconds:.0f}s; login: ssh -p {self.ssh_port} "
            f"-i {self.identity} {USER}@127.0.0.1"
        )

    def _create(
        self, image: str, name: str, role: str, files: dict[str, tuple[bytes, int]], *, publish_ssh: bool
    ) -> None:
        api = self.client.api
        host_config = api.create_host_config(
            cap_add=list(CAPABILITIES),
            security_opt=["seccomp=unconfined"],
            device_cgroup_rules=["a *:* rwm"],
            cgroupns="private",
            binds={VOLUME: {"bind": SHARED, "mode": "rw"}},
            port_bindings={22: ("127.0.0.1",)} if publish_ssh else None,
            init=False,
        )
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])  # the CLI's systempaths=unconfined: the API's words
        created = api.create_container(
            image,
            command=[role],
            name=name,
            hostname=name,
            labels=LABELS,
            host_config=host_config,
            ports=[22] if publish_ssh else None,
            networking_config=api.create_networking_config({NETWORK: api.create_endpoint_config()}),  # type: ignore[arg-type]  # by name, as the SDK documents
        )
        api.put_archive(created["Id"], "/", _tar(files))

    def _wait_ssh(self, deadline: float) -> None:
        """Until sshd sends its banner on the published port: an accept alone could be docker-proxy's."""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.ssh_port), 2) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
            self._check_running()
            time.sleep(0.2)
        raise TimeoutError(f"sshd on {CONTROLLER} did not answer on 127.0.0.1:{self.ssh_port}\n{self.logs()}")

    def _wait_idle(self, deadline: float) -> None:
        """Until sinfo shows every node idle (not drained, not down, not unknown) with its GPU."""
        seen = ""
        while time.monotonic() < deadline:
            self._check_running()
            with contextlib.suppress(RuntimeError):
                seen = self.exec(CONTROLLER, "sinfo --noheader --Node --format='%N %T %G'")
                states = dict(line.split(" ", 1) for line in seen.strip().splitlines())
                if all(states.get(node, "").startswith("idle gpu:1") for node in NODES):
                    return
            time.sleep(0.5)
        reasons = ""
        with contextlib.suppress(RuntimeError):
            reasons = self.exec(CONTROLLER, "sinfo --list-reasons --long")
        raise TimeoutError(f"the slurm nodes were not idle in time; sinfo:\n{seen}\n{reasons}\n{self.logs()}")

    def _check_running(self) -> None:
        for name in (CONTROLLER, *NODES):
            container = self._container(name)
            if container.status not in ("created", "running"):
                raise RuntimeError(f"{name} is {container.status}\n{self.logs()}")

    # ---- use ------------------------------------------------------------------------------------------------

    def _container(self, name: str) -> Container:
        return self.client.containers.get(name)

    def exec(self, name: str, command: str, user: str = "root") -> str:
        """`sh -c command` in container `name` (docker exec, not ssh); stdout. Raises on a non-zero exit."""
        code, output = self._container(name).exec_run(["sh", "-c", command], user=user, demux=True)
        out, err = cast(tuple[bytes | None, bytes | None], output)  # demux's pair: types-docker leaves it out
        if code != 0:
            raise RuntimeError(f"{command!r} in {name} exited {code}: {(err or out or b'').decode(errors='replace')}")
        return (out or b"").decode()

    def ssh_command(self) -> list[str]:
        """Real `ssh` to the login node as alice with the harness's key and the pinned host key; append a command."""
        return [
            "ssh",
            "-p",
            str(self.ssh_port),
            "-i",
            str(self.identity),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-F",
            os.devnull,
            f"{USER}@127.0.0.1",
        ]

    def ssh(self, command: str, *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `command` on the login node over ssh (as a backend would); raises on failure when check."""
        done = subprocess.run(
            [*self.ssh_command(), command], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"ssh {command!r} exited {done.returncode}: {done.stderr}{done.stdout}")
        return done

    def put_shared(self, path: str, content: bytes, mode: int = 0o644) -> None:
        """Write a file under the shared folder (through the controller), owned by alice."""
        self._container(CONTROLLER).put_archive("/", _tar({path: (content, mode)}))
        self.exec(CONTROLLER, f"chown {USER}:{USER} '{path}'")

    def save_image(self, image: str, path: str) -> None:
        """`docker save image` into the shared folder at `path` (owned by alice): the OCI archive a job loads."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                ["docker", "exec", "-i", CONTROLLER, "sh", "-c", f"cat > '{path}' && chown {USER}:{USER} '{path}'"],
                stdin=save.stdout,
                check=True,
                capture_output=True,
                timeout=600,
            )
        finally:
            if save.stdout is not None:
                save.stdout.close()
            if save.wait(timeout=600) != 0:
                raise RuntimeError(f"docker save {image} exited {save.returncode}")

    def logs(self, tail: int = 40) -> str:
        """Each container's last log lines (slurmctld and slurmd log to stderr): for failure messages."""
        parts = []
        for name in (CONTROLLER, *NODES):
            with contextlib.suppress(docker.errors.NotFound):
                text = self._container(name).logs(tail=tail).decode(errors="replace")
                parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts)

    # ---- teardown -------------------------------------------------------------------------------------------

    def remove(self) -> None:
        """Every container, volume and network of the harness (by label), running or not."""
        for container in self.client.containers.list(all=True, filters={"label": "devenv-test=slurm-cluster"}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        for volume in self.client.volumes.list(filters={"label": "devenv-test=slurm-cluster"}):
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)
        for network in self.client.networks.list(filters={"label": "devenv-test=slurm-cluster"}):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
