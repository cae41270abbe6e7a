"""Slurm's side of a workspace in plain text: the batch script a workspace's job runs, and squeue's answer read
back into devenv's Observed. Pure functions, so every mapping is unit-tested without a cluster.

A job is named `devenv-<workspace>` (the Handle's container name): the job itself carries the workspace, so a
daemon killed mid-submit finds the job it made instead of submitting a second one.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, replace

from devenv.backends.base import (
    HOME_MOUNT,
    JUPYTER_PORT,
    SECRETS_DIR,
    SSH_PORT,
    ContainerStatus,
    LaunchRequest,
    Observed,
    container_name,
)
from devenv.backends.slurm.models import SlurmConfig
from devenv.errors import BackendError

SQUEUE_FORMAT = "%i|%j|%T|%r|%N|%P|%Q"  # job id, name, state, reason, node list, partition, priority: a line a job
QUEUE_FORMAT = "%i|%P|%Q"  # every user's pending job: id, partition, priority (for a pending workspace's place)
# The container shares the node's network (a rootless user network would need /dev/net/tun and slirp4netns on
# every node): sshd listens at SSH_PORT_BASE + job id % PORT_SPAN, the owner's JupyterLab at JUPYTER_PORT_BASE + the
# same, below Linux's ephemeral ports (32768-). Two jobs on one node clash only when their ids differ by a multiple
# of PORT_SPAN; the marker says which ports a job took.
SSH_PORT_BASE = 20000
JUPYTER_PORT_BASE = 25000
PORT_SPAN = 5000
SPAWN_ROOT = "/tmp/devenv-spawn"  # + job id: the node-local folder where a job's execs are started (see exec)
SECRETS_TMPFS = "rw,noexec,nosuid,nodev,size=1m,mode=0700"  # podman's tmpfs takes no uid=: root's until secrets come
PENDING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
# squeue --states for "a job stands for this workspace": an ending (COMPLETING) job does not stop a new start
LIVE_STATES = "PENDING,CONFIGURING,RUNNING,RESIZING,SUSPENDED,STOPPED,REQUEUED,REQUEUE_HOLD"
ACTIVE = PENDING | {"RUNNING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}


def job_name(workspace: str) -> str:
    return container_name(workspace)


def workspace_of(name: str) -> str | None:
    """The workspace a job name carries, or None for a job that is not devenv's."""
    prefix = container_name("")
    return name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else None


def slurm_time(seconds: int) -> str:
    """Seconds as sbatch's --time (days-hours:minutes:seconds)."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def directives(request: LaunchRequest, config: SlurmConfig, folder: str) -> list[str]:
    """sbatch's options for the request: what Slurm must allocate (its cgroup is the workspace's limit)."""
    options = [
        f"--job-name={job_name(request.workspace)}",
        "--nodes=1",
        "--ntasks=1",
        f"--output={folder}/job-%j.out",
        "--open-mode=append",
        "--no-requeue",
    ]  # a node failure ends the run (lost, said so); `devenv start` decides what next
    limit = slurm_time(request.time) if request.time else config.time
    if limit:  # neither the spec nor daemon.yaml names one: the partition's default
        options.append(f"--time={limit}")
    if config.partition:
        options.append(f"--partition={config.partition}")
    if config.account:
        options.append(f"--account={config.account}")
    if config.qos:
        options.append(f"--qos={config.qos}")
    if request.cpu:
        options.append(f"--cpus-per-task={math.ceil(request.cpu)}")
    if request.memory:
        options.append(f"--mem={math.ceil(request.memory / 2**20)}M")
    if request.gpu_count is not None:
        if request.gpu_count < 1:
            raise BackendError(
                "not supported on slurm yet: `gpu: all` (a Slurm job asks for a number of GPUs)",
                hint="name a count in resources.gpu, e.g. gpu: 1",
            )
        options.append(f"--gres=gpu:{request.gpu_count}")
    return options


def _podman_options(request: LaunchRequest, folder: str) -> list[str]:
    env = {
        **request.env,
        "DEVENV_WORKSPACE": request.workspace,
        "DEVENV_SSH": "1" if request.ssh else "0",
        "DEVENV_JUPYTER": "1" if request.jupyter else "0",
    }
    options = [
        "--replace",
        f"--name={job_name(request.workspace)}",
        "--network=host",
        # alice (the job's user) is dev (1000) inside: the shared home stays hers, writable by dev
        "--userns=keep-id:uid=1000,gid=1000",
        "--user=0:0",
        f"--volume={folder}/home:{HOME_MOUNT}",
        f"--tmpfs={SECRETS_DIR}:{SECRETS_TMPFS}",
    ]
    options += [f"--env={name}={value}" for name, value in sorted(env.items())]
    if request.shm:
        options.append(f"--shm-size={request.shm}b")
    options += [f"--ulimit={name}={value}:{value}" for name, value in sorted(request.ulimits.items())]
    return options


# Every job's first lines before podman. scancel of an earlier job on this node killed rootless podman's pause
# process (it lived in that job's cgroup): its stale pid file makes every podman call fail, so it goes, and
# migrate is the last resort.
PODMAN_PRELUDE = """\
for pause in "${XDG_RUNTIME_DIR:-/tmp/podman-run-$(id -u)}/libpod/tmp/pause.pid" \\
        "/run/user/$(id -u)/libpod/tmp/pause.pid" "/tmp/podman-run-$(id -u)/libpod/tmp/pause.pid"; do
    if [ -f "$pause" ] && ! kill -0 "$(cat "$pause")" 2>/dev/null; then rm -f "$pause"; fi
done
podman info >/dev/null 2>&1 || podman system migrate >/dev/null
"""


SCRIPT_BODY = """\
set -euo pipefail
umask 077
folder={folder}
name={name}
image={image}
{prelude}podman image exists "$image" || podman load --quiet --input {archive} >/dev/null
devices=()  # the GPUs Slurm gave this job, and only those
for gpu in $(echo "${{SLURM_JOB_GPUS:-${{CUDA_VISIBLE_DEVICES:-}}}}" | tr , ' '); do
    devices+=(--device "/dev/nvidia$gpu")
done
for extra in /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools; do
    if [ -e "$extra" ] && [ "${{#devices[@]}}" -gt 0 ]; then devices+=(--device "$extra"); fi
done
port=$(({ssh_base} + SLURM_JOB_ID % {span}))
jupyter_port=$(({jupyter_base} + SLURM_JOB_ID % {span}))
podman create {options} --env=DEVENV_JUPYTER_PORT="$jupyter_port" "${{devices[@]}}" "$image" >/dev/null
if [ -d "$folder/files" ]; then podman cp "$folder/files/." "$name:/"; fi
printf 'Port %s\\n' "$port" > "$folder/sshd-port.conf"
podman cp "$folder/sshd-port.conf" "$name:/etc/ssh/sshd_config.d/devenv-port.conf"
podman start --attach "$name" &
pid=$!
until [ "$(podman container inspect --format '{{{{.State.Running}}}}' "$name" 2>/dev/null)" = true ]; do
    kill -0 "$pid" 2>/dev/null || {{ wait "$pid"; exit $?; }}
    sleep 0.2
done
{spawner}echo "devenv: $name runs on $(hostname) (job $SLURM_JOB_ID)"  # the job's log says when it came up
printf '%s %s %s %s %s\\n' "$SLURM_JOB_ID" "$(hostname)" "$port" "$jupyter_port" {ports} > "$folder/ready.new"
mv -f "$folder/ready.new" "$folder/ready"
wait "$pid"
"""


# The job's own step starts what execs ask for (EXEC_RELAY), before the ready marker: requests come through a
# FIFO in a node-local folder only the job's user can enter.
SPAWNER = (
    "spawn="
    + SPAWN_ROOT
    + """-$SLURM_JOB_ID
rm -rf "$spawn" && mkdir -m 700 "$spawn" && mkfifo "$spawn/requests"
(
    set +e  # the script's errexit would end the spawner at a command's first failure
    while :; do
        while read -r request; do
            run="$spawn/$request"
            [ -f "$run/command" ] || continue
            (
                bash "$run/command" > "$run/out" 2> "$run/err" < /dev/null
                echo $? > "$run/code.new" && mv "$run/code.new" "$run/code"
            ) &
        done < "$spawn/requests"
    done
) &
"""
)


# An exec's `srun --overlap` step asks the job's own step to start it (the spawner above), then relays its output
# and exit code: Slurm ends a step's processes with the step, so a server an exec leaves running (a background
# hook, a grantee's JupyterLab) would die with it; started by the job's step it runs until the job ends, as a
# process left by `docker exec` runs until the container stops. A job of an earlier devenv has no spawner: the
# command runs in the step itself. $1: the spawn folder, $2: the podman exec command line.
EXEC_RELAY = """\
if [ ! -p "$1/requests" ]; then exec bash -c "$2"; fi
run=$(mktemp -d "$1/run.XXXXXX") && mkfifo "$run/out" "$run/err" && printf '%s\\n' "$2" > "$run/command" || exit 125
trap 'rm -rf "$run"' EXIT
printf '%s\\n' "${run##*/}" > "$1/requests"
cat "$run/err" >&2 &
errors=$!
cat "$run/out"
wait "$errors"
for _ in $(seq 600); do [ -f "$run/code" ] && break; sleep 0.05; done
exit "$(cat "$run/code" 2>/dev/null || echo 255)"
"""


def render_script(request: LaunchRequest, config: SlurmConfig, image_id: str) -> str:
    """The workspace's batch script: load the image once per node, run it with the allocation's GPUs, the
    shared home and sshd on a port of its own, and mark it ready (job id, node, port) once it runs."""
    folder = config.folder(request.workspace)
    digest = image_id.removeprefix("sha256:")
    head = "\n".join(f"#SBATCH {option}" for option in directives(request, config, folder))
    return (
        "#!/bin/bash\n"
        + head
        + "\n"
        + SCRIPT_BODY.format(
            prelude=PODMAN_PRELUDE,
            spawner=SPAWNER,
            folder=shlex.quote(folder),
            name=job_name(request.workspace),
            image=digest,
            archive=shlex.quote(f"{config.images}/{digest}.tar"),
            ssh_base=SSH_PORT_BASE,
            jupyter_base=JUPYTER_PORT_BASE,
            span=PORT_SPAN,
            ports=",".join(map(str, request.ports)) or "-",
            options=" ".join(shlex.quote(option) for option in _podman_options(request, folder)),
        )
    )


@dataclass(frozen=True)
class SlurmJob:
    """One line of `squeue --format=SQUEUE_FORMAT`."""

    id: str
    name: str
    state: str
    reason: str
    nodes: str
    partition: str = ""
    priority: int = 0
    place: int | None = None  # a pending job's place in its partition's queue (1: next), when asked

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def parse_squeue(text: str) -> list[SlurmJob]:
    jobs = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) not in (5, 7) or not parts[0]:
            continue
        job_id, name, state, reason, nodes = parts[:5]
        partition, priority = (parts[5], parts[6]) if len(parts) == 7 else ("", "0")
        state = state.split()[0] if state else "UNKNOWN"
        jobs.append(SlurmJob(job_id, name, state, reason, nodes, partition, _priority(priority)))
    return jobs


def placed(jobs: list[SlurmJob], queue: str) -> list[SlurmJob]:
    """`jobs` with each pending one's place in its partition's queue, from every user's pending jobs (`queue`,
    QUEUE_FORMAT): ahead of it are those of a higher priority, and of the same priority those submitted first
    (a lower id), as Slurm's main scheduler takes them (backfill may start a small job sooner)."""
    waiting = [line.strip().split("|") for line in queue.splitlines()]
    others = [(_number(parts[0]), parts[1], _priority(parts[2])) for parts in waiting if len(parts) == 3]
    if not others:
        return jobs
    result = []
    for job in jobs:
        if job.state == "PENDING":
            mine = (job.priority, -_number(job.id))
            ahead = sum(
                1
                for number, partition, priority in others
                if partition == job.partition and number != _number(job.id) and (priority, -number) > mine
            )
            job = replace(job, place=ahead + 1)
        result.append(job)
    return result


def _priority(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def current_jobs(jobs: list[SlurmJob]) -> dict[str, SlurmJob]:
    """The one job that stands for each workspace: an active one before an ended one, then the newest."""
    chosen: dict[str, SlurmJob] = {}
    for job in jobs:
        workspace = workspace_of(job.name)
        if workspace is None:
            continue
        seen = chosen.get(workspace)
        if seen is None or (job.active, _number(job.id)) > (seen.active, _number(seen.id)):
            chosen[workspace] = job
    return chosen


def _number(job_id: str) -> int:
    head = job_id.split("_")[0].split("+")[0]
    return int(head) if head.isdigit() else -1


@dataclass(frozen=True)
class Ready:
    """The marker a job writes once its container runs: which job, on which node, and the node's ports of its
    sshd, of the owner's JupyterLab and of the spec's `ports:` (the same numbers: the node's network is shared)."""

    job: str
    node: str
    port: int  # sshd
    jupyter_port: int | None = None
    ports: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Ready | None:
        parts = text.split()
        if len(parts) not in (3, 5) or not all(part.isdigit() for part in parts[2:4]):
            return None
        if len(parts) == 3:  # written by a job of an earlier devenv
            return cls(parts[0], parts[1], int(parts[2]))
        ports = tuple(int(port) for port in parts[4].split(",") if port.isdigit())
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]), ports)

    def node_port(self, port: int) -> int:
        """Where the node answers for the container's `port`: sshd and JupyterLab moved, the rest as asked."""
        if port == SSH_PORT:
            return self.port
        if port == JUPYTER_PORT and self.jupyter_port is not None:
            return self.jupyter_port
        return port


def describe(job: SlurmJob) -> str:
    """Slurm's own words: "PENDING (Resources), 2nd in the gpu queue", "RUNNING on node1", "TIMEOUT (TimeLimit)
    on node2"."""
    text = job.state
    if job.reason and job.reason != "None":
        text += f" ({job.reason})"
    if job.nodes and job.state not in PENDING:
        text += f" on {job.nodes}"
    if job.place is not None:
        text += f", {_ordinal(job.place)} in the {job.partition} queue"
    return text


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def status_of(job: SlurmJob, ready: Ready | None) -> ContainerStatus:
    """devenv's status for a job: running only once its container runs (the job may still be loading it)."""
    if job.state in ("RUNNING", "RESIZING"):
        return "running" if ready is not None and ready.job == job.id else "created"
    if job.state in PENDING:
        return "created"
    if job.state in ("SUSPENDED", "STOPPED"):
        return "paused"
    if job.state in ("NODE_FAIL", "BOOT_FAIL"):
        return "dead"  # the node failed under it: the daemon marks the workspace lost
    return "exited"  # COMPLETING, CANCELLED, TIMEOUT, PREEMPTED, FAILED, COMPLETED, OUT_OF_MEMORY...


@dataclass(frozen=True)
class Folder:
    """A workspace's folder on the shared storage, as the listing sees it."""

    workspace: str
    owner: str | None
    daemon: str | None
    image_hash: str | None
    ready: Ready | None
    submitted: str | None  # the last job id submitted for it


def observe(workspace: str, job: SlurmJob | None, folder: Folder | None) -> Observed:
    """One workspace as devenv sees it, from its job (None: none queued or remembered) and its folder."""
    ready = folder.ready if folder else None
    if job is None:
        status: ContainerStatus = "exited" if folder and folder.submitted else "created"
        detail = f"no job (the last was {folder.submitted})" if folder and folder.submitted else "not submitted"
    else:
        status = status_of(job, ready)
        detail = describe(job) + (" (starting the container)" if job.state == "RUNNING" and status != "running" else "")
    return Observed(
        workspace,
        job.id if job else "",
        job_name(workspace),
        status,
        detail=detail,
        owner=folder.owner if folder else None,
        image_hash=folder.image_hash if folder else None,
        daemon=folder.daemon if folder else None,
    )
