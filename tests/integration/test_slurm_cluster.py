"""The Slurm test cluster (tests/harness/slurm_cluster.py) schedules for real: the ground the slurm backend
(issue 21) stands on. Everything a backend would do goes through the login node over real ssh."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import docker
import pytest

from devenv.lock.models import BaseImage
from harness.slurm_cluster import CONTROLLER, NODES, SHARED, USER, SlurmCluster

HOME = f"{SHARED}/{USER}"

# A job that reports where it runs and what open() of the fake GPU says, then holds its allocation until the
# test drops a release file (bounded, so a test that dies leaves no job behind for long).
HOLDER = """\
#!/bin/sh
dir="$1"
python3 - > "$dir/$SLURM_JOB_ID.tmp" <<'EOF'
import errno, os, socket
try:
    os.close(os.open("/dev/nvidia0", os.O_RDWR))
    opened = "OK"
except OSError as error:
    opened = errno.errorcode[error.errno]
print(f"host={socket.gethostname()} gpus={os.environ.get('SLURM_JOB_GPUS', 'none')} nvidia0={opened}")
EOF
mv "$dir/$SLURM_JOB_ID.tmp" "$dir/$SLURM_JOB_ID.report"
i=0
while [ ! -e "$dir/release" ] && [ "$i" -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
"""

PODMAN_JOB = """\
set -e
podman load --quiet --input {archive} >/dev/null
podman run --rm --network host --device /dev/nvidia0 {image} sh -c '
    . /etc/os-release; echo "os=$VERSION_CODENAME"
    python3 -c "import os; os.close(os.open(\\"/dev/nvidia0\\", os.O_RDWR))" 2>&1 | tail -1'
"""


@pytest.fixture(scope="module")
def cluster(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlurmCluster]:
    """slurmctld + login sshd and two 1-GPU slurmd nodes; removed (containers, volume, network) after."""
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), client) as made:
        yield made


@pytest.fixture
def workdir(cluster: SlurmCluster) -> Iterator[str]:
    """A fresh folder of alice's on the shared storage holding the holder script; her jobs are cancelled after."""
    path = f"{HOME}/{secrets.token_hex(4)}"
    cluster.ssh(f"mkdir -p {path}")
    cluster.put_shared(f"{path}/holder.sh", HOLDER.encode(), 0o755)
    yield path
    cluster.ssh(f"touch {path}/release; scancel -u {USER}", check=False)


def sbatch(cluster: SlurmCluster, workdir: str, *options: str) -> str:
    done = cluster.ssh(f"cd {workdir} && sbatch --parsable --output=%j.out {' '.join(options)} holder.sh {workdir}")
    return done.stdout.strip().split(";")[0]


def queue(cluster: SlurmCluster, jobs: list[str]) -> dict[str, tuple[str, str]]:
    """{job: (state, reason or node list)} as squeue prints them: one call for all jobs, as the backend will."""
    out = cluster.ssh(f"squeue --noheader --jobs={','.join(jobs)} --format='%i %T %R'").stdout
    return {job: (state, where) for job, state, where in (line.split(maxsplit=2) for line in out.splitlines())}


def wait_for(
    cluster: SlurmCluster, jobs: list[str], state: str, reason: str | None = None, timeout: float = 90
) -> dict[str, tuple[str, str]]:
    """Until squeue shows every job in `state` (and, for pending jobs, with `reason`); a bounded poll."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        seen = queue(cluster, jobs)
        if all(seen.get(job, ("", ""))[0] == state and reason in (None, seen[job][1]) for job in jobs):
            return seen
        time.sleep(0.3)
    raise AssertionError(
        f"jobs {jobs} not all {state} {reason or ''} within {timeout}s: {seen}\n{cluster.logs(tail=15)}"
    )


def report(cluster: SlurmCluster, workdir: str, job: str, timeout: float = 60) -> dict[str, str]:
    """The holder's one-line report, once written (polled: the job may start a moment before it writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = cluster.ssh(f"cat {workdir}/{job}.report", check=False)
        if done.returncode == 0 and done.stdout.strip():
            return dict(field.split("=", 1) for field in done.stdout.split())
        time.sleep(0.3)
    output = cluster.ssh(f"cat {workdir}/{job}.out", check=False).stdout
    raise AssertionError(f"job {job} wrote no report within {timeout}s; its output: {output}")


def test_sinfo_over_ssh_shows_two_idle_nodes_with_one_gpu_each(cluster: SlurmCluster) -> None:
    done = cluster.ssh("hostname; echo via=${SSH_CONNECTION:+sshd}; sinfo --noheader --Node --format='%N %P %T %G'")
    host, via, *rows = done.stdout.strip().splitlines()
    assert (host, via) == (CONTROLLER, "via=sshd")
    assert sorted(rows) == [f"{node} gpu* idle gpu:1" for node in NODES]


def test_two_gpu_jobs_land_on_different_nodes_and_each_opens_only_its_gpu(cluster: SlurmCluster, workdir: str) -> None:
    jobs = [sbatch(cluster, workdir, "--gres=gpu:1") for _ in range(2)]
    running = wait_for(cluster, jobs, "RUNNING")
    assert sorted(where for _, where in running.values()) == sorted(NODES)
    for job in jobs:
        # ENXIO: the device cgroup let open() through to a device with no driver behind it (a fake GPU)
        assert report(cluster, workdir, job) == {"host": running[job][1], "gpus": "0", "nvidia0": "ENXIO"}
    # the negative on the same nodes, while the GPU jobs hold them: no --gres, so ConstrainDevices denies it
    for node in NODES:
        control = sbatch(cluster, workdir, f"--nodelist={node}")
        wait_for(cluster, [control], "RUNNING")
        assert report(cluster, workdir, control) == {"host": node, "gpus": "none", "nvidia0": "EPERM"}


def test_a_third_gpu_job_pends_for_resources_while_both_gpus_are_held(cluster: SlurmCluster, workdir: str) -> None:
    held = [sbatch(cluster, workdir, "--gres=gpu:1") for _ in range(2)]
    wait_for(cluster, held, "RUNNING")
    third = sbatch(cluster, workdir, "--gres=gpu:1")
    wait_for(cluster, [third], "PENDING", reason="(Resources)")
    assert [state for state, _ in queue(cluster, held).values()] == ["RUNNING", "RUNNING"]
    cluster.ssh(f"touch {workdir}/release")
    # the positive control: with the GPUs given back, the same job runs and finishes on one of the nodes
    assert report(cluster, workdir, third)["host"] in NODES
    assert report(cluster, workdir, third)["nvidia0"] == "ENXIO"


def test_podman_in_a_job_runs_an_image_archive_from_the_shared_folder(
    cluster: SlurmCluster, cpu_base: BaseImage, workdir: str
) -> None:
    archive = f"{workdir}/base.tar"
    cluster.save_image(cpu_base.image, archive)
    # rootless podman as alice inside the job's allocation; the GPU passed in as a device
    cluster.put_shared(f"{workdir}/podman.sh", PODMAN_JOB.format(archive=archive, image=cpu_base.image).encode())
    done = cluster.ssh(f"srun --gres=gpu:1 --chdir={workdir} sh podman.sh", timeout=600, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    lines = done.stdout.strip().splitlines()
    assert "os=bookworm" in lines, done.stdout
    assert "No such device or address" in lines[-1], done.stdout  # ENXIO: the fake GPU reached the container
