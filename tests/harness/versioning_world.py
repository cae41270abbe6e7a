"""Everything a test of code, data and records needs, real and started once: a git server with a
token, an S3-compatible server, DVC repos pushed to a directory remote and to S3, and two locked
projects that clone them (one per remote kind: their locks differ by dvc-s3).

Servers listen on the engine's bridge address, which workspaces reach as host.docker.internal;
the directory remote is a folder on this machine, the engine's host, which the workspace mounts.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import docker

from devenv.backends.base import ENGINE_HOST_NAME
from devenv.build.project import lock_project, open_project
from devenv.testing.network import engine_host_address
from devenv.testing.projects import copy_template
from harness.dvc_repo import make_dvc_repo
from harness.git_server import GitHttpServer, git
from harness.s3_server import CREDENTIALS_ENV, S3Server

GIT_USER = "git"
GIT_TOKEN = "ghp-test-token-5f2a9c"  # what the GIT_TOKEN secret must hold
BUCKET = "devenv-data"
TRAIN = b"x,y\n" + b"".join(f"{i},{i * i % 97}\n".encode() for i in range(4000))
LABELS = b"".join(f"{i}\n".encode() for i in range(0, 4000, 3))


@dataclass(frozen=True)
class DataRepo:
    """A repo on the git server whose data DVC tracks: URL from a workspace, commit, data checksums."""

    name: str
    url: str  # as a workspace clones it (host.docker.internal)
    work: Path  # a working clone on this machine, to make more commits
    commit: str
    files: dict[str, str]  # relative path -> sha256


class VersioningWorld:
    def __init__(self, root: Path, client: docker.DockerClient) -> None:
        self.root = root
        self.client = client
        self.address = engine_host_address(client)
        self._stack = ExitStack()
        self.git = GitHttpServer(root / "git", username=GIT_USER, token=GIT_TOKEN, host=self.address)
        self.s3 = S3Server(host=self.address)

    def __enter__(self) -> VersioningWorld:
        (self.root / "git").mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(self.git)
        self._stack.enter_context(self.s3)
        self.s3.create_bucket(BUCKET)
        self.remote_dir = self.root / "dvc-remote"
        self.remote_dir.mkdir()
        self.dir_repo = self._repo("proj-dir", str(self.remote_dir), {})
        subprocess.run(["chmod", "-R", "a+rX", str(self.remote_dir)], check=True)  # the workspace's dev reads it
        self.s3_repo = self._repo("proj-s3", f"s3://{BUCKET}/store", {"endpointurl": self.s3.endpoint()})
        self.dir_project = self._project("vdir", self.dir_repo, f"remote: {self.remote_dir}", jupyter=True)
        self.s3_project = self._project(
            "vs3",
            self.s3_repo,
            f"remote: s3://{BUCKET}/store\n  endpoint: {self.s3.endpoint(ENGINE_HOST_NAME)}",
            secrets=["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def allow_in(self, home: Path) -> None:
        """Let a daemon (before it starts) mount this world's directory remote: a spec may name only host
        folders its admin lists in daemon.yaml."""
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = home / "daemon.yaml"
        before = config.read_text() if config.exists() else ""
        config.write_text(before + f"allowed_host_folders: [{self.root}]\n")

    def new_dir_repo(self, name: str) -> DataRepo:
        """Another repo with its data on the directory remote: for a test that moves a repo on (others
        clone the shared ones and expect their commits)."""
        made = self._repo(name, str(self.remote_dir), {})
        subprocess.run(["chmod", "-R", "a+rX", str(self.remote_dir)], check=True)
        return made

    def _repo(self, name: str, remote: str, config: dict[str, str]) -> DataRepo:
        work = self.root / f"work-{name}"
        made = make_dvc_repo(
            work,
            {"data/train.csv": TRAIN, "data/labels.txt": LABELS},
            remote_url=remote,
            remote_config=config,
            env=CREDENTIALS_ENV,
        )
        (work / "train.py").write_text("print('training')\n")
        git(work, "add", "train.py")
        git(work, "commit", "--quiet", "-m", "add train.py")
        subprocess.run(
            ["git", "clone", "--quiet", "--bare", str(work), str(self.root / "git" / f"{name}.git")], check=True
        )
        git(work, "remote", "add", "origin", str(self.root / "git" / f"{name}.git"))
        commit = git(work, "rev-parse", "HEAD")
        return DataRepo(name, self.git.url(name, host=ENGINE_HOST_NAME), work, commit, made.files)

    def _project(
        self, name: str, repo: DataRepo, data: str, *, jupyter: bool = False, secrets: list[str] | None = None
    ) -> Path:
        folder = self.root / f"project-{name}"
        spec = copy_template("minimal", folder, project_name=name)
        text = spec.read_text()
        if not jupyter:
            text = text.replace("jupyter: true", "jupyter: false")
        text += (
            f"repo:\n  url: {repo.url}\n  token_secret: GIT_TOKEN\n"
            f"data:\n  {data}\n  paths: [data]\n"
            f"tracking:\n  wandb:\n    project: devenv-it\n    entity: ml-team\n"
            f"secrets: [{', '.join(['API_SECRET', *(secrets or [])])}]\n"
            f"env:\n  WANDB_MODE: offline\n"
        )
        spec.write_text(text)
        lock_project(self.client, open_project(spec))
        return folder

    def project(self, source: Path, folder: Path, name: str, *, replace: dict[str, str] | None = None) -> Path:
        """A copy of a locked project under another workspace name (edits must keep the lock's inputs)."""
        shutil.copytree(source, folder)
        spec = folder / "devenv.yaml"
        text = spec.read_text().replace(f"name: {source.name.removeprefix('project-')}\n", f"name: {name}\n", 1)
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        spec.write_text(text)
        return folder
