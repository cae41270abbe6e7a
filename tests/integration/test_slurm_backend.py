"""The slurm backend (devenv/backends/slurm) against a real Slurm (tests/harness/slurm_cluster.py): workspaces
submitted through the login node over devenv's own SSH session, run by rootless podman inside their jobs."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from devenv.backends.base import SSH_PORT, Handle, LaunchRequest, Observed
from devenv.backends.slurm.backend import SlurmBackend
from devenv.backends.slurm.jobs import JUPYTER_PORT_BASE, LIVE_STATES, PODMAN_PRELUDE, PORT_SPAN
from devenv.backends.slurm.models import SlurmConfig
from devenv.backends.ssh.known_hosts import KnownHosts
from devenv.backends.ssh.session import SshSession, load_private_key
from devenv.backends.ssh.target import parse_target
from devenv.errors import BackendError
from devenv.lock.models import BaseImage
from devenv.testing.network import free_port
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.jupyter import ProxyLab, run_in_kernel
from harness.slurm_cluster import CONTROLLER, NODES, PARTITION, SHARED, USER, SlurmCluster

READY_WITHIN = 300  # seconds: the first start ships the image and podman loads it (vfs) on each node


@pytest.fixture(scope="module")
def cluster(
    client: docker.DockerClient, cpu_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlurmCluster]:
    """slurmctld + login sshd and two 1-GPU slurmd nodes; removed (containers, volume, network) after."""
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), client) as made:
        yield made


@pytest.fixture(scope="module")
def backend(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmBackend]:
    """The backend logged in as alice with the harness's key, the login node's host key pinned."""
    url = f"ssh://{USER}@127.0.0.1:{cluster.ssh_port}"
    pins = KnownHosts(cluster.known_hosts, system=tmp_path_factory.mktemp("no-system") / "known_hosts")
    session = SshSession(parse_target(url), load_private_key(cluster.identity.read_text()), pins)
    made = SlurmBackend("slurm", SlurmConfig(login=url, shared=f"{SHARED}/{USER}", time="30:00"), session=session)
    yield made
    made.close()


@pytest.fixture
def names(cluster: SlurmCluster, backend: SlurmBackend) -> Iterator[Callable[[], str]]:
    """Fresh workspace names; each one's job is cancelled and its folder removed after the test."""
    made: list[str] = []

    def name() -> str:
        made.append(f"w{secrets.token_hex(3)}")
        return made[-1]

    yield name
    cluster.ssh(f"scancel -u {USER}", check=False)
    for workspace in made:
        cluster.ssh(
            f"rm -rf {SHARED}/{USER}/devenv/{workspace} || podman unshare rm -rf {SHARED}/{USER}/devenv/{workspace}",
            check=False,
        )


def request(workspace: str, image: WorkspaceImage, **extra: object) -> LaunchRequest:
    return LaunchRequest(
        workspace=workspace,
        owner="ann",
        image=image.tag,
        image_hash=image.image_hash,
        cpu=1,
        memory=256 * 2**20,
        env={"GREETING": "hello"},
        **extra,
    )  # type: ignore[arg-type]


def wait_until(
    backend: SlurmBackend, workspace: str, check: Callable[[Observed], bool], timeout: float = READY_WITHIN
) -> Observed:
    """A bounded poll of list_workspaces until the workspace's observation passes `check`."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        seen = next((item for item in backend.list_workspaces() if item.workspace == workspace), None)
        if seen is not None and check(seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(
        f"{workspace} did not get there within {timeout}s: {seen}\n"
        f"{b''.join(backend.logs(Handle.for_workspace(workspace))).decode(errors='replace')[-2000:]}"
    )


def run(backend: SlurmBackend, workspace: str, argv: list[str], **options: object) -> tuple[bytes, bytes, int]:
    stream = backend.exec(Handle.for_workspace(workspace), argv, **options)  # type: ignore[arg-type]
    out, err = b"", b""
    for kind, chunk in stream:
        if kind == "stdout":
            out += chunk
        else:
            err += chunk
    assert stream.exit_code is not None
    return out, err, stream.exit_code


def jobs_named(cluster: SlurmCluster, workspace: str) -> list[str]:
    return cluster.ssh(f"squeue --noheader --name=devenv-{workspace} --format=%i").stdout.split()


def test_create_records_the_request_and_submits_nothing(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage
) -> None:
    workspace = names()
    handle = backend.create(request(workspace, light_image))
    assert backend.create(request(workspace, light_image)) == handle  # idempotent
    seen = [item for item in backend.list_workspaces() if item.workspace == workspace]
    assert [(item.status, item.detail, item.owner) for item in seen] == [("created", "not submitted", "ann")]
    assert jobs_named(cluster, workspace) == []
    folder = f"{SHARED}/{USER}/devenv/{workspace}"
    assert cluster.ssh(f"test -d {folder}/home && grep -c GREETING {folder}/request.json").stdout.strip() == "1"
    assert Handle.for_workspace(workspace).volume in {volume.name for volume in backend.list_volumes()}


def test_start_runs_the_image_in_a_job_once_and_exec_streams_its_output(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage
) -> None:
    workspace = names()
    handle = backend.create(request(workspace, light_image))
    started = time.monotonic()
    first = backend.start(handle)
    assert first.status in ("created", "running"), first
    assert first.detail.startswith(("PENDING", "RUNNING")), first
    backend.start(handle)  # a second start while the job exists submits nothing
    assert len(jobs_named(cluster, workspace)) == 1
    running = wait_until(backend, workspace, lambda seen: seen.running)
    print(f"submit -> exec-ready: {time.monotonic() - started:.1f}s ({running.detail})")
    assert running.detail.startswith("RUNNING on ") and running.detail.split()[-1] in NODES
    assert run(backend, workspace, ["echo", "hi"]) == (b"hi\n", b"", 0)
    out, _, code = run(
        backend,
        workspace,
        ["sh", "-c", "id -un; pwd; echo $GREETING $EXTRA; exit 3"],
        env={"EXTRA": "there"},
        workdir="/tmp",
    )
    assert (out, code) == (b"dev\n/tmp\nhello there\n", 3)
    assert run(backend, workspace, ["id", "-un"], user="root")[0] == b"root\n"
    # what an exec leaves running lives on (as after `docker exec`): the job's own step started it, so Slurm's
    # end of the exec's step does not end it
    left = "setsid nohup sleep 600 > /dev/null 2>&1 < /dev/null & echo $! > /tmp/left.pid"
    assert run(backend, workspace, ["sh", "-c", left])[2] == 0
    alive = ["sh", "-c", 'kill -0 "$(cat /tmp/left.pid)" && echo alive']
    assert run(backend, workspace, alive)[0] == b"alive\n"  # the positive control
    deadline = time.monotonic() + 5  # a bounded poll: Slurm ends a finished step's processes within a second
    while time.monotonic() < deadline:
        assert run(backend, workspace, alive)[0] == b"alive\n"
    backend.start(handle)
    assert len(jobs_named(cluster, workspace)) == 1


def start_together(backend: SlurmBackend, handle: Handle, together: threading.Barrier) -> None:
    together.wait()
    backend.start(handle)


def test_two_daemons_starting_one_workspace_at_once_submit_one_job(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    """A daemon restarted after a kill -9 mid-submit, or a second daemon, starts the workspace again while the
    first start is under way: the name check and sbatch run under the workspace's lock, so one job comes out."""
    url = f"ssh://{USER}@127.0.0.1:{cluster.ssh_port}"
    pins = KnownHosts(cluster.known_hosts, system=tmp_path / "no-system")
    other = SlurmBackend(
        "slurm",
        backend.config,
        session=SshSession(parse_target(url), load_private_key(cluster.identity.read_text()), pins),
    )
    try:
        for round_ in range(3):
            workspace = names()
            handle = backend.create(request(workspace, light_image))
            together = threading.Barrier(2)

            threads = [
                threading.Thread(target=start_together, args=(which, handle, together)) for which in (backend, other)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert len(jobs_named(cluster, workspace)) == 1, f"round {round_}"
    finally:
        other.close()


def test_stop_ends_the_job_and_the_home_survives_the_next_start(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage
) -> None:
    workspace = names()
    handle = backend.create(request(workspace, light_image))
    backend.start(handle)
    wait_until(backend, workspace, lambda seen: seen.running)
    assert run(backend, workspace, ["sh", "-c", "echo kept > /home/dev/note"])[2] == 0
    followed: list[bytes] = []
    follower = threading.Thread(target=lambda: followed.extend(backend.logs(handle, follow=True)), daemon=True)
    follower.start()
    so_far = b"".join(backend.logs(handle))
    assert b"runs on" in so_far  # the job's log on the shared storage: its script says so before it is ready
    backend.stop(handle)
    follower.join(60)  # a followed log ends with its job
    assert not follower.is_alive() and b"".join(followed).startswith(so_far)
    stopped = wait_until(backend, workspace, lambda seen: not seen.running and seen.status != "created", timeout=60)
    assert stopped.status == "exited", stopped
    assert stopped.detail.startswith(("CANCELLED", "COMPLETING", "no job")), stopped
    backend.start(handle)
    wait_until(backend, workspace, lambda seen: seen.running)
    assert run(backend, workspace, ["cat", "/home/dev/note"]) == (b"kept\n", b"", 0)
    backend.remove(handle, keep_volume=True)
    assert cluster.ssh(f"cat {SHARED}/{USER}/devenv/{workspace}/home/note").stdout == "kept\n"
    assert workspace not in {seen.workspace for seen in backend.list_workspaces() if seen.running}
    backend.remove(handle, keep_volume=False)
    backend.remove(handle, keep_volume=False)  # idempotent
    assert cluster.ssh(f"test -e {SHARED}/{USER}/devenv/{workspace}", check=False).returncode == 1


def test_two_gpu_workspaces_land_on_two_nodes_and_a_third_pends_for_resources(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage
) -> None:
    workspaces = [names() for _ in range(3)]
    for workspace in workspaces[:2]:
        backend.start(backend.create(request(workspace, light_image, gpu_count=1)))
    running = [wait_until(backend, workspace, lambda seen: seen.running) for workspace in workspaces[:2]]
    assert sorted(seen.detail.split()[-1] for seen in running) == sorted(NODES)
    for workspace in workspaces[:2]:
        assert run(backend, workspace, ["sh", "-c", "ls /dev/nvidia*"])[0] == b"/dev/nvidia0\n"
    third = workspaces[2]
    backend.start(backend.create(request(third, light_image, gpu_count=1)))
    pending = wait_until(backend, third, lambda seen: "Resources" in seen.detail, timeout=60)
    # its place: the only job waiting (the two running hold both GPUs), so the next to start
    assert (pending.status, pending.detail) == ("created", f"PENDING (Resources), 1st in the {PARTITION} queue")


def greeting(port: int) -> bytes:
    """The first bytes a server at 127.0.0.1:port sends (sshd speaks first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        return connection.recv(64)


def test_secrets_ports_and_jobs_ended_from_outside_by_the_time_limit_and_by_scancel(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage
) -> None:
    """A running workspace gets its secrets in its tmpfs, its sshd and the spec's ports through tunnels from the
    login node, and says so in Slurm's words when its time limit or a scancel from outside ends its job."""
    timed, workspace = names(), names()
    backend.start(backend.create(request(timed, light_image, time=60)))
    handle = backend.create(request(workspace, light_image, ports=(8080,)))
    backend.start(handle)
    seen = wait_until(backend, workspace, lambda seen: seen.running)

    backend.put_secrets(handle, {"token": b"s3cret"})
    assert (
        run(
            backend, workspace, ["sh", "-c", "stat -c '%a %U' /run/devenv/secrets/token; cat /run/devenv/secrets/token"]
        )[0]
        == b"400 dev\ns3cret"
    )
    backend.put_secrets(handle, {})
    assert run(backend, workspace, ["ls", "-A", "/run/devenv/secrets"])[0] == b""
    assert not cluster.ssh(f"grep -rl s3cret {SHARED}/{USER}/devenv/{workspace}", check=False).stdout

    assert greeting(seen.ports[SSH_PORT]).startswith(b"SSH-2.0-")  # the container's sshd, on its node
    job = seen.container_id
    jupyter_port = run(backend, workspace, ["printenv", "DEVENV_JUPYTER_PORT"])[0].decode().strip()
    assert jupyter_port == str(JUPYTER_PORT_BASE + int(job) % PORT_SPAN)  # two workspaces on a node: two ports
    run(backend, workspace, ["sh", "-c", "echo served > /tmp/index.html"])
    # a server the exec keeps open (a process an exec leaves behind ends with its Slurm step: not yet kept)
    server = backend.exec(handle, ["python3", "-m", "http.server", "8080", "--directory", "/tmp"])
    threading.Thread(target=lambda: [None for _ in server], daemon=True).start()
    address = backend.internal_address(handle, 8080)
    assert address[0] == "127.0.0.1" and seen.ports[8080] == address[1]
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(address, timeout=10) as connection:
                connection.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                answer = b"".join(iter(lambda: connection.recv(65536), b""))
            if answer.endswith(b"served\n"):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server on 8080 was not reached through the tunnel"
        time.sleep(0.5)

    cluster.ssh(f"scancel {job}")  # from outside devenv
    ended = wait_until(backend, workspace, lambda seen: not seen.running, timeout=60)
    assert ended.status in ("exited", "created") and ended.detail.startswith(("CANCELLED", "COMPLETING")), ended
    with pytest.raises(BackendError, match="not running"):
        backend.internal_address(handle, 8080)
    out_of_time = wait_until(backend, timed, lambda seen: seen.detail.startswith("TIMEOUT"), timeout=180)
    assert out_of_time.status == "exited" and "TimeLimit" in out_of_time.detail, out_of_time


def cluster_daemon(cluster: SlurmCluster, env: dict[str, str]) -> Devenvd:
    """A devenvd (not started) whose daemon.yaml names the test cluster as backend `cluster`, its login node's
    host key pinned."""
    daemon = Devenvd(env=env)
    daemon.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copy(cluster.known_hosts, daemon.home / "known_hosts")  # the login node's host key, pinned
    url = f"ssh://{USER}@127.0.0.1:{cluster.ssh_port}"
    (daemon.home / "daemon.yaml").write_text(
        f"backends:\n  cluster: {{type: slurm, login: '{url}', shared: {SHARED}/{USER}, "
        f"identity: {cluster.identity}, time: '30:00'}}\n"
    )
    return daemon


def test_devenv_up_on_the_slurm_backend_daemon_yaml_names_then_exec_ssh_secrets_and_stop(
    cluster: SlurmCluster, names: Callable[[], str], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    """The user's path: daemon.yaml names the cluster, `devenv up --on cluster` builds beside the daemon, ships
    the image and submits; exec, `devenv ssh` (through the login node) and secrets work; stop is a scancel."""
    workspace = names()
    daemon = cluster_daemon(cluster, {"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    try:
        folder = copy_project(
            light_image,
            tmp_path / "p",
            workspace,
            extra="secrets: [TOKEN]\n",
            replace={"memory: 4Gi": "memory: 256Mi", "cpu: 2": "cpu: 1"},
        )  # a test node's size
        daemon.cli("secret", "set", "TOKEN", input="s3cret", check=True)
        daemon.cli("up", "--on", "cluster", cwd=folder, check=True, timeout=READY_WITHIN)
        listed = daemon.wait_for(workspace, "running", timeout=READY_WITHIN)
        assert listed["backend"] == "cluster", listed
        done = daemon.cli("exec", workspace, "--", "cat", "/run/devenv/secrets/TOKEN", check=True)
        assert done.stdout == "s3cret"
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        deadline = time.monotonic() + 60
        while (login := daemon.cli("ssh", "-i", str(key), workspace, "-o", "BatchMode=yes", "--", "whoami")).returncode:
            assert time.monotonic() < deadline, login.stderr
            time.sleep(1)
        assert login.stdout == "dev\n"  # the container's sshd on its node, through the login node
        daemon.cli("stop", workspace, check=True)
        daemon.wait_for(workspace, "stopped", timeout=120)
        live = cluster.ssh(f"squeue --noheader --name=devenv-{workspace} --states={LIVE_STATES} --format=%i")
        assert live.stdout.split() == []  # scancelled (a job may still show COMPLETING for a moment)
    finally:
        daemon.cleanup()


def test_a_daemon_killed_as_it_submits_finds_its_job_again_and_never_makes_a_second(
    cluster: SlurmCluster, names: Callable[[], str], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    """kill -9 of devenvd the moment its job is in Slurm's queue (the daemon has not yet written down that it
    submitted): restarted, it converges to running on that job, and the cluster holds one job for it."""
    workspace = names()
    daemon = cluster_daemon(cluster, {"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start()
    try:
        folder = copy_project(
            light_image, tmp_path / "p", workspace, replace={"memory: 4Gi": "memory: 256Mi", "cpu: 2": "cpu: 1"}
        )
        up = daemon.popen("up", "--on", "cluster", cwd=folder)
        deadline = time.monotonic() + READY_WITHIN
        while not (submitted := jobs_named(cluster, workspace)):  # a bounded poll for the job in the queue
            assert time.monotonic() < deadline and up.poll() is None, daemon.log_tail()
            time.sleep(0.1)
        daemon.kill9()
        up.communicate(timeout=60)  # the CLI lost its daemon: it ends (its output drained)
        daemon.start()
        daemon.wait_for(workspace, "running", timeout=READY_WITHIN)
        assert jobs_named(cluster, workspace) == submitted  # the same one job, found again: none submitted since
    finally:
        daemon.cleanup()


# every process's command line in the container, as root reads /proc (no ps needed in the image)
COMMAND_LINES = (
    "import pathlib; print('\\n'.join(p.read_bytes().replace(b'\\0', b' ').decode(errors='replace') "
    "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline') if p.exists()))"
)


def test_a_grantees_processes_end_with_her_access_on_the_cluster_and_the_owners_go_on(
    cluster: SlurmCluster, names: Callable[[], str], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    """Grants and revocation as everywhere else: what alice starts in the job (detached, so the job's own step
    keeps it) ends when her grant is revoked; the owner's goes on; her next exec is refused."""
    workspace = names()
    port = free_port()
    owner = cluster_daemon(cluster, {"DEVENV_RECONCILE_INTERVAL": "1", "DEVENV_ACCESS_INTERVAL": "0.5"})
    owner.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    made = owner.token("create", "alice")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    alice = Devenvd(env={"DEVENV_HOST": f"http://127.0.0.1:{port}", "DEVENV_TOKEN": token})
    try:
        folder = copy_project(
            light_image, tmp_path / "p", workspace, replace={"memory: 4Gi": "memory: 256Mi", "cpu: 2": "cpu: 1"}
        )
        owner.cli("up", "--on", "cluster", cwd=folder, check=True, timeout=READY_WITHIN)
        owner.wait_for(workspace, "running", timeout=READY_WITHIN)

        def lines() -> str:
            return owner.cli("exec", "--root", workspace, "--", "python3", "-c", COMMAND_LINES, check=True).stdout

        refused = alice.cli("exec", workspace, "--", "true")
        assert refused.returncode != 0  # no grant yet: the positive control of the refusal below
        owner.cli("access", "grant", workspace, "alice", "--ssh", check=True)
        started = alice.cli("exec", workspace, "--", "sh", "-c", "nohup sleep 4711 >/dev/null 2>&1 & echo started")
        assert started.stdout.strip() == "started", started.stderr
        owner.cli("exec", workspace, "--", "sh", "-c", "nohup sleep 4712 >/dev/null 2>&1 &", check=True)
        deadline = time.monotonic() + 30
        while not ("sleep 4711" in (seen := lines()) and "sleep 4712" in seen):  # both run: the spawner kept them
            assert time.monotonic() < deadline, seen
            time.sleep(0.5)
        owner.cli("access", "revoke", workspace, "alice", check=True)
        after = lines()  # the sweep runs inside the revoke: when it answers, nothing of hers is left
        assert "sleep 4711" not in after and "sleep 4712" in after, after
        assert alice.cli("exec", workspace, "--", "true").returncode != 0
    finally:
        owner.cleanup()


def test_the_owners_jupyterlab_through_the_daemons_proxy_on_the_cluster(
    cluster: SlurmCluster, names: Callable[[], str], workspace_image: WorkspaceImage, tmp_path: Path
) -> None:
    """`devenv jupyter` as everywhere else: the login link, JupyterLab's page, a kernel over its websocket, all
    through the daemon's proxy and its tunnel (login node -> the node's JupyterLab port of this job)."""
    workspace = names()
    port = free_port()
    daemon = cluster_daemon(cluster, {"DEVENV_RECONCILE_INTERVAL": "1"})
    daemon.start(args=["--listen", f"tcp://127.0.0.1:{port}"])
    lab: ProxyLab | None = None
    try:
        folder = copy_project(
            workspace_image, tmp_path / "p", workspace, replace={"memory: 4Gi": "memory: 900Mi", "cpu: 2": "cpu: 1"}
        )
        daemon.cli("up", "--on", "cluster", cwd=folder, check=True, timeout=2 * READY_WITHIN)
        daemon.wait_for(workspace, "running", timeout=2 * READY_WITHIN)
        deadline = time.monotonic() + 120
        while (link := daemon.cli("jupyter", workspace, "--no-browser")).returncode:  # until JupyterLab answers
            assert time.monotonic() < deadline, link.stderr
            time.sleep(1)
        lab = ProxyLab(link.stdout.strip().splitlines()[0], workspace)
        _kernel, socket = lab.kernel()
        assert run_in_kernel(socket, "import socket; print(socket.gethostname() != '', 6 * 7)").strip() == "True 42"
    finally:
        if lab is not None:
            lab.close()
        daemon.cleanup()


BASELINE = """#!/bin/sh
#SBATCH --output={folder}/base-%j.out
{prelude}podman run --rm --replace --name={name} --network=host --userns=keep-id:uid=1000,gid=1000 --user=0:0 \\
    --entrypoint=sleep {image} 600
"""


def test_submit_to_exec_ready_against_plain_sbatch_and_srun_overlap(
    cluster: SlurmCluster,
    backend: SlurmBackend,
    names: Callable[[], str],
    light_image: WorkspaceImage,
    client: docker.DockerClient,
) -> None:
    """The issue's figure: a workspace's submit -> exec answers, against sbatch of the same container and
    `srun --overlap podman exec true` polled, with the image already on the node (both pinned by --nodelist
    would need a backend option: both nodes hold it after the GPU test; a cold node loads it first)."""
    workspace, base = names(), names()
    folder = f"{SHARED}/{USER}/devenv/{base}"
    image = str(client.images.get(light_image.tag).id).removeprefix("sha256:")
    cluster.ssh(f"mkdir -p {folder}")
    script = BASELINE.format(folder=folder, name=base, image=image, prelude=PODMAN_PRELUDE)
    cluster.put_shared(f"{folder}/job.sh", script.encode())
    started = time.monotonic()
    job = cluster.ssh(f"sbatch --parsable {folder}/job.sh").stdout.strip()
    deadline = started + READY_WITHIN
    while cluster.ssh(f"srun --jobid={job} --overlap --quiet podman exec {base} true", check=False).returncode:
        assert time.monotonic() < deadline, cluster.ssh(f"cat {folder}/base-{job}.out", check=False).stdout
        time.sleep(0.5)
    plain = time.monotonic() - started
    cluster.ssh(f"scancel {job}")

    handle = backend.create(request(workspace, light_image))
    started = time.monotonic()
    backend.start(handle)
    wait_until(backend, workspace, lambda seen: seen.running)
    assert run(backend, workspace, ["true"])[2] == 0
    ours = time.monotonic() - started
    print(
        f"submit -> exec-ready: workspace {ours:.1f}s, sbatch + srun --overlap {plain:.1f}s, ratio {ours / plain:.2f}"
    )


def test_a_node_taken_down_under_a_workspace_shows_it_dead_in_slurms_words(
    cluster: SlurmCluster, backend: SlurmBackend, names: Callable[[], str], light_image: WorkspaceImage
) -> None:
    """The node fails under the job (an admin's `scontrol update state=down` stands in for a crash): the
    workspace is observed dead with Slurm's reason, which the daemon's reconciler shows as lost."""
    workspace = names()
    backend.start(backend.create(request(workspace, light_image)))
    running = wait_until(backend, workspace, lambda seen: seen.running)
    node = running.detail.split()[-1]
    cluster.exec(CONTROLLER, f"scontrol update nodename={node} state=down reason=devenv-test")
    try:
        dead = wait_until(backend, workspace, lambda seen: seen.status == "dead", timeout=120)
        assert dead.detail.startswith("NODE_FAIL") and node in dead.detail, dead
    finally:  # the node back in service for the tests after this one
        cluster.exec(
            CONTROLLER,
            f"scontrol update nodename={node} state=resume 2>&1 || "
            f"scontrol update nodename={node} state=idle 2>&1 || true",
        )
        deadline, state = time.monotonic() + 60, ""
        while (state := cluster.exec(CONTROLLER, f"sinfo -h -n {node} -o %T").strip()) not in (
            "idle",
            "mixed",
            "allocated",
        ):
            assert time.monotonic() < deadline, f"{node} stays {state}"
            time.sleep(1)
