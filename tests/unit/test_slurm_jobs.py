"""The slurm backend's pure parts (devenv/backends/slurm/jobs.py, models.py): the batch script a request
becomes, and squeue's lines read back as devenv's states with Slurm's own words."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from devenv.backends.base import LaunchRequest
from devenv.backends.slurm.jobs import (
    EXEC_RELAY,
    SPAWN_ROOT,
    SPAWNER,
    Folder,
    Ready,
    current_jobs,
    job_name,
    observe,
    parse_squeue,
    render_script,
    slurm_time,
    workspace_of,
)
from devenv.backends.slurm.models import SlurmConfig
from devenv.backends.slurm.shell import folder_tar, request_from_json, request_json
from devenv.errors import BackendError, UsageError

CONFIG = SlurmConfig(login="ssh://alice@login", shared="/shared", partition="gpu", account="lab", time="2:00:00")


def request(**extra: object) -> LaunchRequest:
    fields: dict[str, object] = {"cpu": 1.5, "memory": 3 * 2**30, "gpu_count": 2, **extra}
    return LaunchRequest(workspace="ws1", owner="ann", image="devenv/x:1", image_hash="h1", env={"A": "it's"}, **fields)  # type: ignore[arg-type]


def sbatch_lines(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_the_script_asks_slurm_for_what_the_request_needs() -> None:
    lines = sbatch_lines(render_script(request(), CONFIG, "sha256:abc"))
    for wanted in (
        "--job-name=devenv-ws1",
        "--gres=gpu:2",
        "--cpus-per-task=2",
        "--mem=3072M",
        "--partition=gpu",
        "--account=lab",
        "--time=2:00:00",
        "--nodes=1",
        "--output=/shared/devenv/ws1/job-%j.out",
        "--no-requeue",
    ):
        assert wanted in lines
    assert not any(line.startswith("--qos") for line in lines)


def test_the_script_runs_the_shipped_image_with_the_home_the_env_and_the_allocations_gpus() -> None:
    script = render_script(request(), CONFIG, "sha256:abc")
    assert "podman load --quiet --input /shared/images/abc.tar" in script
    assert 'podman image exists "$image"' in script and "image=abc" in script
    assert "--volume=/shared/devenv/ws1/home:/home/dev" in script and "--network=host" in script
    assert "'--env=A=it'\"'\"'s'" in script  # quoted for the shell, whatever the value holds
    assert "--env=DEVENV_WORKSPACE=ws1" in script and "--env=DEVENV_SSH=1" in script
    assert "SLURM_JOB_GPUS" in script and '--device "/dev/nvidia$gpu"' in script


def test_a_request_without_gpus_asks_for_none_and_all_gpus_is_refused() -> None:
    lines = sbatch_lines(render_script(request(gpu_count=None, cpu=None, memory=None), CONFIG, "abc"))
    assert not any(line.startswith(("--gres", "--cpus-per-task", "--mem")) for line in lines)
    with pytest.raises(BackendError, match="not supported on slurm yet"):
        render_script(request(gpu_count=-1), CONFIG, "abc")


def test_the_config_refuses_what_slurm_or_a_shell_would_misread() -> None:
    assert CONFIG.home("ws1") == "/shared/devenv/ws1/home" and CONFIG.images == "/shared/images"
    for bad in (
        {"shared": "relative"},
        {"shared": "/a/'b"},
        {"partition": "gpu;rm"},
        {"time": "soon"},
        {"login": "alice@login"},
    ):
        with pytest.raises(UsageError):
            SlurmConfig(**{"login": "ssh://alice@login", "shared": "/shared", **bad})


SQUEUE = """\
101|devenv-a|RUNNING|None|node1
102|devenv-b|PENDING|Resources|
103|devenv-c|COMPLETING|NonZeroExitCode|node2
104|other-job|RUNNING|None|node2
90|devenv-d|TIMEOUT|TimeLimit|node1
91|devenv-d|PENDING|Priority|
garbage line
"""


def test_squeue_lines_become_one_job_per_workspace() -> None:
    jobs = current_jobs(parse_squeue(SQUEUE))
    assert sorted(jobs) == ["a", "b", "c", "d"]  # a job not named devenv-* is someone else's
    assert (jobs["b"].state, jobs["b"].reason, jobs["b"].nodes) == ("PENDING", "Resources", "")
    assert jobs["d"].id == "91"  # the queued job stands for the workspace, not the one that ended


def test_states_map_to_devenv_statuses_with_slurms_words() -> None:
    jobs = current_jobs(parse_squeue(SQUEUE))
    ready = Folder("a", "ann", None, "h", Ready("101", "node1", 20101), "101")
    running = observe("a", jobs["a"], ready)
    assert (running.status, running.detail, running.container_id, running.owner) == (
        "running",
        "RUNNING on node1",
        "101",
        "ann",
    )
    loading = observe("a", jobs["a"], None)  # the job runs, its container is not up yet
    assert (loading.status, loading.detail) == ("created", "RUNNING on node1 (starting the container)")
    assert (observe("b", jobs["b"], None).status, observe("b", jobs["b"], None).detail) == (
        "created",
        "PENDING (Resources)",
    )
    assert (observe("c", jobs["c"], None).status, observe("c", jobs["c"], None).detail) == (
        "exited",
        "COMPLETING (NonZeroExitCode) on node2",
    )
    ended = parse_squeue("90|devenv-d|TIMEOUT|TimeLimit|node1\n")[0]
    assert (observe("d", ended, None).status, observe("d", ended, None).detail) == (
        "exited",
        "TIMEOUT (TimeLimit) on node1",
    )
    failed = parse_squeue("92|devenv-f|NODE_FAIL|NodeDown|node2\n")[0]
    assert (observe("f", failed, None).status, observe("f", failed, None).detail) == (
        "dead",
        "NODE_FAIL (NodeDown) on node2",
    )
    stale = Folder("a", None, None, None, Ready("99", "node1", 20099), "101")  # a marker from the last job
    assert observe("a", jobs["a"], stale).status == "created"


def test_a_workspace_without_a_job_is_created_until_first_submitted_then_exited() -> None:
    fresh = observe("e", None, Folder("e", "ann", None, "h", None, None))
    assert (fresh.status, fresh.detail, fresh.container_name) == ("created", "not submitted", "devenv-e")
    gone = observe("e", None, Folder("e", "ann", None, "h", None, "120"))
    assert (gone.status, gone.detail) == ("exited", "no job (the last was 120)")


def test_names_and_records_round_trip() -> None:
    assert job_name("ws1") == "devenv-ws1" and workspace_of("devenv-ws1") == "ws1"
    assert workspace_of("devenv-") is None and workspace_of("jupyter") is None
    assert Ready.parse("101 node1 20101") == Ready("101", "node1", 20101) and Ready.parse("") is None
    made = request(ports=(8080,), gpu_ids=("0",), ulimits={"nofile": 1024}, time=5400)
    assert request_from_json(request_json(made).decode()) == made


def test_the_time_limit_is_the_specs_else_daemon_yamls_else_the_partitions() -> None:
    assert slurm_time(90) == "0-00:01:30" and slurm_time(2 * 86400 + 3600 + 61) == "2-01:01:01"
    spec_says = sbatch_lines(render_script(request(time=8 * 3600), CONFIG, "abc"))
    assert "--time=0-08:00:00" in spec_says and "--time=2:00:00" not in spec_says
    assert "--time=2:00:00" in sbatch_lines(render_script(request(), CONFIG, "abc"))
    no_default = SlurmConfig(login="ssh://alice@login", shared="/shared")
    assert not any(line.startswith("--time") for line in sbatch_lines(render_script(request(), no_default, "abc")))


def test_the_ready_marker_says_where_the_node_answers_for_each_port_of_the_container() -> None:
    script = render_script(request(ports=(8080, 6006)), CONFIG, "abc")
    assert "jupyter_port=$((25000 + SLURM_JOB_ID % 5000))" in script
    assert "\nport=$((20000 + SLURM_JOB_ID % 5000))" in script
    assert '--env=DEVENV_JUPYTER_PORT="$jupyter_port"' in script and '"$port" "$jupyter_port" 8080,6006 >' in script
    assert '"$jupyter_port" - >' in render_script(request(), CONFIG, "abc")  # no ports asked: a placeholder
    ready = Ready.parse("101 node1 20101 25101 8080,6006")
    assert ready == Ready("101", "node1", 20101, 25101, (8080, 6006))
    assert (ready.node_port(22), ready.node_port(8888), ready.node_port(8080)) == (20101, 25101, 8080)
    assert Ready.parse("101 node1 20101 25101 -") == Ready("101", "node1", 20101, 25101, ())
    assert Ready.parse("101 node1 20101").node_port(8888) == 8888  # type: ignore[union-attr]  # an older job's
    assert Ready.parse("101 node1 x 25101 -") is None and Ready.parse("101 node1 20101 25101") is None


def test_files_for_the_container_keep_their_modes_and_the_rest_stays_alices() -> None:
    """podman cp copies the modes of files/ onto the image (an /etc of 0700 locked dev out of bash.bashrc)."""
    with tarfile.open(fileobj=io.BytesIO(folder_tar({"files/etc/devenv/a": b"x", "request.json": b"{}"}))) as archive:
        modes = {member.name: (member.type, member.mode) for member in archive.getmembers()}
    assert modes == {
        "files": (tarfile.DIRTYPE, 0o755),
        "files/etc": (tarfile.DIRTYPE, 0o755),
        "files/etc/devenv": (tarfile.DIRTYPE, 0o755),
        "files/etc/devenv/a": (tarfile.REGTYPE, 0o644),
        "request.json": (tarfile.REGTYPE, 0o600),
    }
    with pytest.raises(BackendError, match="a path without"):
        folder_tar({"files/../x": b""})


def test_an_exec_is_started_by_the_jobs_own_step_and_its_output_and_code_relayed(tmp_path: Path) -> None:
    """The spawner (as the batch step runs it) and the relay (as an exec's step runs it), in real bash: the command
    runs in the spawner's session (on a cluster: the job's step, which Slurm does not end with the exec's)."""
    job = f"9{os.getpid()}"
    folder = f"{SPAWN_ROOT}-{job}"
    env = {**os.environ, "SLURM_JOB_ID": job}
    spawner = subprocess.Popen(["bash", "-c", f"{SPAWNER}wait"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not Path(folder, "requests").exists():  # a bounded poll: the spawner makes its FIFO first
            assert time.monotonic() < deadline and spawner.poll() is None, "the spawner did not start"
            time.sleep(0.05)
        marker = tmp_path / "session"
        command = f"echo to-out; echo to-err >&2; ps -o sid= $$ > {marker}; exit 3"
        relay = subprocess.run(
            ["setsid", "bash", "-c", EXEC_RELAY, "relay", folder, command], capture_output=True, text=True, timeout=30
        )
        assert (relay.stdout, relay.stderr, relay.returncode) == ("to-out\n", "to-err\n", 3)
        assert int(marker.read_text()) == spawner.pid  # run in the spawner's session, not the relay's
        assert list(Path(folder).glob("run.*")) == []  # each run's folder goes with its relay
        # a job of an earlier devenv has no spawner: the command runs in the relay's own step
        old = subprocess.run(
            ["bash", "-c", EXEC_RELAY, "relay", str(tmp_path / "none"), "echo direct; exit 4"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (old.stdout, old.returncode) == ("direct\n", 4)
    finally:
        os.killpg(spawner.pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", folder], check=False)
