"""The slurm backend: each workspace is one Slurm batch job, submitted and watched through the cluster's login
node over devenv's verified SSH connection (the same SshSession, target and pinned known_hosts as SSH hosts).

What lives where:
- `<shared>/devenv/<workspace>/`: request.json (the LaunchRequest), labels, files/ (placed in the container at
  each start), job.sh, the job's output, the `ready` marker, and home/ (the home, outliving every job).
- `<shared>/images/<image id>.tar`: `docker save` of the image from the engine beside the daemon, shipped once.
- The container runs under rootless podman inside the job's allocation, so Slurm's cgroup is its limit and
  scancel ends it. Nothing is submitted until `start`; a job of the workspace's name is never submitted twice.

- The container shares the node's network; its sshd and JupyterLab take ports of their own there (named in the
  `ready` marker), and the daemon reaches them through tunnels from the login node, as it reaches an SSH host's.

Not yet: put_files into a running workspace, following logs. Each raises BackendError("not supported on slurm
yet: ...").
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import paramiko

from devenv.backends.base import (
    HOME_MOUNT,
    SECRETS_DIR,
    SSH_PORT,
    ExecStream,
    Handle,
    LaunchRequest,
    Observed,
    ObservedVolume,
)
from devenv.backends.containers import WORKSPACE_UID
from devenv.backends.docker import DockerBackend
from devenv.backends.docker_io import staged_name, tar_of
from devenv.backends.slurm.jobs import (
    EXEC_RELAY,
    LIVE_STATES,
    QUEUE_FORMAT,
    SPAWN_ROOT,
    SQUEUE_FORMAT,
    Folder,
    Ready,
    current_jobs,
    describe,
    job_name,
    observe,
    parse_squeue,
    placed,
    render_script,
    status_of,
)
from devenv.backends.slurm.models import SlurmConfig
from devenv.backends.slurm.shell import (
    folder_line,
    folder_tar,
    label_values,
    output_chunks,
    podman_exec,
    remove_tree,
    request_from_json,
    request_json,
)
from devenv.backends.ssh.session import SshSession, session_from_config
from devenv.backends.ssh.tunnels import Tunnels
from devenv.engine.sdk import DockerException
from devenv.errors import BackendError, EngineUnreachable

if TYPE_CHECKING:
    from devenv.build.builder import BuildResult
    from devenv.build.project import Project
    from devenv.build.verify import Verified
    from devenv.lock.models import BaseImage
    from devenv.progress import Progress

_SPLIT = "@@devenv@@"
_QUEUE = "@@queue@@"
LOG_POLL = 2  # seconds between a followed log's checks that its job still runs
_q = shlex.quote


def _unsupported(what: str) -> BackendError:
    return BackendError(f"not supported on slurm yet: {what}")


class SlurmBackend:
    """Workspaces as Slurm jobs on one cluster, through its login node (Backend; GPUs by --gres)."""

    supports_gpu = True

    def __init__(
        self,
        name: str,
        config: SlurmConfig,
        *,
        identity: str | None = None,
        session: SshSession | None = None,
        builder: DockerBackend | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.config = config
        self.session = session if session is not None else session_from_config(config.login, identity)
        self.url = self.session.url
        self.timeout = timeout
        # images are locked and built on the engine beside the daemon, then shipped to the shared folder
        self.builder = builder if builder is not None else DockerBackend(f"{name}-builder")
        self._submitting = threading.Lock()  # one submit at a time: the name check and sbatch go together
        # a running workspace's sshd (and JupyterLab, and the spec's ports) on its node, reached as the daemon
        # reaches an SSH host's containers: a local port whose connections are direct-tcpip from the login node
        self.tunnels = Tunnels(self.session)

    def close(self) -> None:
        self.tunnels.close()
        self.session.close()

    # --- images: the daemon's engine builds them (ImageBuilder), a job loads them from the shared folder ---

    def build(self, project: Project, progress: Progress | None = None, *, no_cache: bool = False) -> BuildResult:
        return self.builder.build(project, progress, no_cache=no_cache)

    def verify(self, project: Project, progress: Progress | None = None) -> Verified:
        return self.builder.verify(project, progress)

    def base(
        self, recipe: str, *, make: bool, force: bool = False, progress: Progress | None = None
    ) -> BaseImage | None:
        return self.builder.base(recipe, make=make, force=force, progress=progress)

    def run(self, image: str, argv: list[str], *, network: bool = True) -> ExecStream:
        return self.builder.run(image, argv, network=network)  # on the engine beside the daemon, not in a job

    def lock(self, project: Project, progress: Progress | None = None, *, upgrade: bool = False) -> bool:
        return self.builder.lock(project, progress, upgrade=upgrade)

    # --- the login node ---

    def _run(
        self, command: str, action: str, *, timeout: float | None = None, stdin: Iterable[bytes] | None = None
    ) -> str:
        """Run a shell command on the login node (with `stdin` streamed to it: an archive, an image);
        BackendError with its stderr when it fails."""
        done = self.session.run(command, timeout=timeout or self.timeout, stdin=stdin)
        if done.exit_code != 0:
            raise BackendError(f"{action} on {self.url}: exit {done.exit_code}: {(done.stderr or done.stdout)[-800:]}")
        return done.stdout

    # --- observation: one command each ---

    def ping(self) -> None:
        self._run("squeue --version", "asking Slurm for its version")

    def list_workspaces(self) -> list[Observed]:
        """squeue (every state Slurm still remembers; and when a workspace pends, the queue it waits in) and the
        workspace folders, in ONE ssh command."""
        root = _q(self.config.root)
        # every user's pending jobs only when one of ours pends: where it stands in its queue
        command = (
            f"mine=$(squeue --me --noheader --states=all --format={_q(SQUEUE_FORMAT)}) && "
            f'printf "%s\\n" "$mine" && echo {_QUEUE} && '
            f'{{ case "$mine" in *"|PENDING|"*) squeue --noheader --states=PENDING --format={_q(QUEUE_FORMAT)} ;; '
            f"esac; }} && echo {_SPLIT} && "
            f"{{ cd {root} 2>/dev/null || exit 0; for d in */; do d=${{d%/}}; "
            f'[ -e "$d/request.json" ] || continue; '
            f'printf \'%s|%s|%s|%s\\n\' "$d" "$(cat "$d/labels" 2>/dev/null)" '
            f'"$(cat "$d/ready" 2>/dev/null)" "$(cat "$d/submitted" 2>/dev/null)"; done; }}'
        )
        out = self._run(command, "listing workspaces")
        both, _, listing = out.partition(_SPLIT)
        queue, _, waiting = both.partition(_QUEUE)
        jobs = current_jobs(placed(parse_squeue(queue), waiting))
        folders = {folder.workspace: folder for folder in map(folder_line, listing.splitlines()) if folder}
        found = [
            self._through_tunnels(
                observe(workspace, jobs.get(workspace), folders.get(workspace)), folders.get(workspace)
            )
            for workspace in sorted(set(jobs) | set(folders))
        ]
        self.tunnels.keep_only({seen.container_name for seen in found if seen.running})
        return found

    def _through_tunnels(self, seen: Observed, folder: Folder | None) -> Observed:
        """A running workspace's sshd and the spec's ports as this machine reaches them: a tunnel each."""
        ready = folder.ready if folder else None
        if not seen.running or ready is None:
            return seen
        ports = {
            port: self.tunnels.local_port(
                seen.container_name, ready.node, ready.node_port(port), wish=0 if port == SSH_PORT else port
            )
            for port in (SSH_PORT, *ready.ports)
        }
        return replace(seen, ports=ports)

    def list_volumes(self) -> list[ObservedVolume]:
        root = _q(self.config.root)
        out = self._run(
            f'cd {root} 2>/dev/null || exit 0; for d in */; do d=${{d%/}}; [ -d "$d/home" ] && '
            f'printf \'%s|%s\\n\' "$d" "$(cat "$d/labels" 2>/dev/null)"; done; true',
            "listing homes",
        )
        found = []
        for line in out.splitlines():
            workspace, _, text = line.partition("|")
            owner, _, image_hash = label_values(text)
            found.append(ObservedVolume(Handle.for_workspace(workspace).volume, workspace, owner, image_hash))
        return found

    # --- lifecycle ---

    def ensure_volume(self, workspace: str, owner: str, image_hash: str | None = None) -> str:
        self._run(f"mkdir -p {_q(self.config.home(workspace))}", f"making the home of {workspace}")
        return Handle.for_workspace(workspace).volume

    def create(self, request: LaunchRequest) -> Handle:
        """Record the request in the workspace's folder (nothing is submitted): running it again rewrites it."""
        folder = self.config.folder(request.workspace)
        labels = " ".join(value or "-" for value in (request.owner, request.daemon, request.image_hash))
        files = {
            "request.json": request_json(request),
            "labels": labels.encode(),
            **{f"files/{path.lstrip('/')}": data for path, data in request.files.items()},
        }
        self._run(
            f"umask 077 && mkdir -p {_q(folder)}/home && rm -rf {_q(folder)}/files && tar -x -p -f - -C {_q(folder)}",
            f"recording workspace {request.workspace}",
            stdin=[folder_tar(files)],
        )
        return Handle.for_workspace(request.workspace)

    def start(self, handle: Handle) -> Observed:
        """Submit the workspace's job unless one of its name is queued or running; the image goes first."""
        workspace, folder = handle.workspace, self.config.folder(handle.workspace)
        name = _q(job_name(workspace))
        live = f"squeue --me --noheader --name={name} --states={LIVE_STATES}"
        with self._submitting:
            out = self._run(
                f"cat {_q(folder)}/request.json && echo {_SPLIT} && {live} --format=%i", f"starting {workspace}"
            )
            text, _, queued = out.partition(_SPLIT)
            if not queued.strip():
                request = request_from_json(text)
                image_id = self._ship(request.image)
                script = render_script(request, self.config, image_id).encode()
                # the name is checked again right before sbatch, under the workspace's lock file, in the same
                # command: a start racing another daemon (or one killed after sbatch) finds the job instead of
                # making a second
                self._run(
                    f"exec 9>{_q(folder)}/submit.lock && flock 9 && "
                    f'if [ -z "$({live} --format=%i)" ]; then cat > {_q(folder)}/job.sh && '
                    f"id=$(sbatch --parsable {_q(folder)}/job.sh) && "
                    f'echo "${{id%%;*}}" > {_q(folder)}/submitted; else cat > /dev/null; fi',
                    f"submitting {workspace}",
                    stdin=[script],
                )
        return self._observe(workspace)

    def _observe(self, workspace: str) -> Observed:
        for seen in self.list_workspaces():
            if seen.workspace == workspace:
                return seen
        raise BackendError(f"workspace {workspace} has no folder or job on {self.url}")

    def _ship(self, image: str) -> str:
        """The image's id, its archive made present in the shared folder (`docker save` streamed once)."""
        local = self.builder.client
        try:
            image_id = str(local.images.get(image).id)
        except DockerException as exc:
            raise BackendError(
                f"the image {image} is not on this machine's engine ({exc})",
                hint="build it beside the daemon: the cluster gets it from there",
            ) from exc
        archive = f"{self.config.images}/{image_id.removeprefix('sha256:')}.tar"
        present = self.session.run(f"test -s {_q(archive)}", timeout=self.timeout).exit_code == 0
        if not present:
            partial = f"{archive}.partial.$$"
            self._run(
                f"mkdir -p {_q(self.config.images)} && cat > {partial} && mv -f {partial} {_q(archive)}",
                f"shipping {image}",
                stdin=local.api.get_image(image),
            )
        return image_id

    def stop(self, handle: Handle, *, timeout: int = 10) -> None:
        """scancel by the job's name: Slurm signals, then kills after its KillWait (the home stays)."""
        self._run(f'scancel --user="$(id -un)" --name={_q(handle.container)}', f"stopping {handle.workspace}")

    def remove(self, handle: Handle, *, keep_volume: bool) -> None:
        self.remove_container(handle)
        if not keep_volume:
            self._run(remove_tree(self.config.folder(handle.workspace)), f"removing the home of {handle.workspace}")

    def remove_container(self, handle: Handle) -> None:
        """Cancel the job and forget the workspace's record, keeping its home (idempotent)."""
        folder = _q(self.config.folder(handle.workspace))
        self._run(
            f'scancel --user="$(id -un)" --name={_q(handle.container)} && '
            f"{{ [ -d {folder} ] || exit 0; find {folder} -mindepth 1 -maxdepth 1 ! -name home "
            f"-exec rm -rf {{}} +; }}",
            f"removing {handle.workspace}",
        )

    def put_files(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        """Files wait in the workspace's folder for its next start (each start makes the container anew), and
        go into a running container at once, as the Docker backend places them: staged beside, then moved."""
        if not files:
            return
        staged = {f"files/{path.lstrip('/')}": data for path, data in files.items()}
        self._run(
            f"umask 077 && tar -x -p -f - -C {_q(self.config.folder(handle.workspace))}",
            f"placing files for {handle.workspace}",
            stdin=[folder_tar(staged)],
        )
        seen = self._observe(handle.workspace)
        if not seen.running:
            return
        beside = {path: staged_name(path) for path in files}
        archive = tar_of({beside[path]: data for path, data in files.items()})
        moves = " && ".join(f"mv -f '{beside[path]}' '{path}'" for path in files)
        command = podman_exec(
            seen.container_id,
            ["--interactive", "--user=0", handle.container, "sh", "-c", f"tar -x -f - -C / && {moves}"],
        )
        self._run(command, f"placing files in {handle.workspace}", stdin=[archive])

    def put_secrets(self, handle: Handle, files: Mapping[str, bytes]) -> None:
        """Into the running container's tmpfs, as the Docker backend does: a tar on `podman exec -i`'s stdin
        (through srun into the allocation), never on the shared storage."""
        job = self._running_job(handle)
        archive = tar_of({f"/{name}": data for name, data in files.items()}, mode=0o400, uid=WORKSPACE_UID)
        # rootless podman maps a tmpfs's uid= option through its own user namespace: the folder comes up root's
        # inside, so it is given to dev here, before the files (dev's, 0400) go in
        script = (
            f"chown {WORKSPACE_UID}:{WORKSPACE_UID} {SECRETS_DIR} && chmod 0700 {SECRETS_DIR} && "
            f"find {SECRETS_DIR} -mindepth 1 -delete && tar -x -f - -C {SECRETS_DIR}"
        )
        command = podman_exec(job, ["--interactive", "--user=0", handle.container, "sh", "-c", script])
        self._run(command, f"placing secrets in {handle.workspace}", stdin=[archive])

    # --- inside a workspace ---

    def _running_job(self, handle: Handle) -> str:
        seen = self._observe(handle.workspace)
        if not seen.running:
            raise BackendError(f"{handle.workspace} is not running on {self.url}: {seen.detail}")
        return seen.container_id

    def exec(
        self,
        handle: Handle,
        argv: list[str],
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
        workdir: str = HOME_MOUNT,
    ) -> ExecStream:
        """`srun --overlap` into the job's allocation, where the job's own step starts `podman exec` (EXEC_RELAY):
        output streamed as it comes, and what the command leaves running lives on until the job ends."""
        job = self._running_job(handle)
        options = [f"--user={user}", f"--workdir={workdir}", *(f"--env={k}={v}" for k, v in (env or {}).items())]
        started = " ".join(_q(part) for part in ["podman", "exec", *options, handle.container, *argv])
        relay = ["srun", f"--jobid={job}", "--overlap", "--quiet", "bash", "-c", EXEC_RELAY, "relay"]
        command = " ".join(_q(part) for part in [*relay, f"{SPAWN_ROOT}-{job}", started]) + " </dev/null"
        action = f"running {argv[0] if argv else 'a command'} in {handle.workspace}"
        try:
            channel = self.session.open_session()
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise EngineUnreachable(f"{action} on {self.url} failed ({exc})") from exc
        return ExecStream(output_chunks(channel), channel.recv_exit_status)

    def logs(self, handle: Handle, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        """The current job's output file (the entrypoint's and sshd's lines), on the shared storage; `follow`:
        as it grows, until the job ends (as a container's logs end when it stops) or the reader goes away."""
        folder = _q(self.config.folder(handle.workspace))
        lines = "+1" if tail is None else str(tail)
        if not follow:
            out = self._run(
                f"id=$(cat {folder}/submitted 2>/dev/null) || exit 0; "
                f"tail -n {lines} {folder}/job-$id.out 2>/dev/null || true",
                f"reading {handle.workspace}",
            )
            return iter([out.encode()])
        command = (
            f"id=$(cat {folder}/submitted 2>/dev/null) || exit 0; "
            f"tail -n {lines} -F {folder}/job-$id.out 2>/dev/null & follower=$!; "
            f'while kill -0 "$follower" 2>/dev/null && '
            f'[ -n "$(squeue --noheader --jobs="$id" --states={LIVE_STATES} 2>/dev/null)" ]; '
            f"do sleep {LOG_POLL}; done; "
            f'sleep 1; kill "$follower" 2>/dev/null; true'
        )
        try:
            channel = self.session.open_session()
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise EngineUnreachable(f"following {handle.workspace}'s output on {self.url} failed ({exc})") from exc
        return (chunk for which, chunk in output_chunks(channel) if which == "stdout")

    def internal_address(self, handle: Handle, port: int) -> tuple[str, int]:
        """A port of the running container (JupyterLab's, a grantee's server) through a tunnel to its node."""
        ready = self._ready(handle)
        return "127.0.0.1", self.tunnels.local_port(handle.container, ready.node, ready.node_port(port))

    def _ready(self, handle: Handle) -> Ready:
        folder = _q(self.config.folder(handle.workspace))
        out = self._run(
            f"cat {folder}/ready 2>/dev/null; echo {_SPLIT}; squeue --me --noheader --states=all "
            f"--name={_q(handle.container)} --format={_q(SQUEUE_FORMAT)}",
            f"finding {handle.workspace}",
        )
        marker, _, queue = out.partition(_SPLIT)
        ready, job = Ready.parse(marker), current_jobs(parse_squeue(queue)).get(handle.workspace)
        if job is None or ready is None or status_of(job, ready) != "running":
            raise BackendError(
                f"{handle.workspace} is not running on {self.url}" + (f": {describe(job)}" if job else "")
            )
        return ready
