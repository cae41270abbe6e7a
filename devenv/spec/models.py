"""The one strict model of devenv.yaml.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Validators (fields.py) accept the human forms ("A100:2", "30m", "16Gi") and store plain values; a
dump (`model_dump(mode="json")`) validates back to an equal Spec. The JSON Schema for editors is
generated from these classes (see schema.py), never written by hand.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_serializer, field_validator

from devenv.spec.fields import (
    _FOLDER_RE,
    AptPackage,
    AsOf,
    Autostop,
    Cpu,
    CreateHookStep,
    Entrypoint,
    EnvKey,
    EnvValue,
    Gpu,
    HookStep,
    HookTimeout,
    HostPathOrUrl,
    Name,
    NonEmpty,
    Port,
    ProjectFile,
    Python,
    RepoPath,
    SecretName,
    Size,
    SpecValueError,
    TimeLimit,
    Ulimit,
    UlimitName,
    name_hint,
    slugify,
    type_name,
    valid_name,
)
from devenv.spec.units import GpuRequest

SPEC_FILENAME = "devenv.yaml"


class _Strict(BaseModel):
    """Shared config: unknown keys are errors at every depth."""

    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """What the workspace needs from its host."""

    gpu: Gpu = Field(default=None, description='GPUs: "A100:2", "A100" (one), or a count like 2')
    cpu: Cpu = Field(default=None, description="CPU cores (may be fractional)")
    memory: Size = Field(default=None, description='memory limit, like "16Gi" (stored in bytes)')
    disk: Size = Field(default=None, description='disk for the home volume, like "100Gi" (stored in bytes)')
    shm: Size = Field(
        default=None,
        description='size of /dev/shm, like "8Gi"; default: half the memory limit (or of the host), at least 1 GiB '
        "(PyTorch DataLoader workers pass batches through it)",
    )
    ulimits: dict[UlimitName, Ulimit] = Field(
        default_factory=dict, description="process limits, like {memlock: -1, stack: 67108864}; -1 is unlimited"
    )
    time: TimeLimit = Field(
        default=None,
        description='how long one run may last on a batch cluster (a slurm backend\'s job time limit), like "8h"; '
        "default: the cluster's. Docker backends have no time limit (autostop ends idle workspaces)",
    )

    @field_serializer("gpu")
    def _dump_gpu(self, gpu: GpuRequest | None) -> str | None:
        """Dump the spec form ("A100:2"), which reads back as the same request."""
        return None if gpu is None else str(gpu)


def _refuse_credentials(url: str, hint: str) -> None:
    if "://" not in url:
        return
    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password:
        raise SpecValueError("the URL holds a password or token", hint=hint)


class Repo(_Strict):
    """The Git repository cloned into the workspace home on its first start (never again after)."""

    url: NonEmpty = Field(description="clone URL (https, ssh, or a path on the engine's host)")
    ref: str | None = Field(default=None, description="branch, tag or commit; the default branch when omitted")
    path: RepoPath | None = Field(
        default=None, description="folder under the home to clone into; the URL's last part when omitted"
    )
    token_secret: SecretName | None = Field(
        default=None, description="secret holding an https token, handed to git by a credential helper"
    )
    username: str = Field(default="git", description="user name sent with the token (https)")

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        """A token in the URL would end up in the store, events and logs: it belongs in a secret."""
        _refuse_credentials(url, "put the token in a secret and name it in `repo: token_secret:`")
        return url

    @property
    def folder(self) -> str:
        """Where the clone lives under the home: `path`, else the URL's last part without .git."""
        if self.path:
            return self.path
        last = self.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        last = last.removesuffix(".git")
        return last if _FOLDER_RE.fullmatch(last) else "repo"


class Data(_Strict):
    """DVC data pulled into the workspace's clone of `repo` on its first start (and by `devenv data pull`)."""

    remote: HostPathOrUrl = Field(
        description="a DVC remote: a name from the repo's .dvc/config, a URL (s3://, gs://, ...) "
        "or an absolute path on the engine's host (mounted into the workspace)"
    )
    endpoint: str | None = Field(default=None, description="endpoint URL of an S3-compatible remote")
    paths: list[NonEmpty] = Field(
        default_factory=list,
        description="DVC-tracked paths, or folders holding .dvc files, to pull (relative to the repo); all when empty",
    )

    @field_validator("remote", "endpoint")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        if url is not None:
            _refuse_credentials(url, "give the remote's credentials as secrets (like AWS_ACCESS_KEY_ID)")
        return url

    @property
    def remote_is_path(self) -> bool:
        return self.remote.startswith("/")

    @property
    def remote_is_url(self) -> bool:
        return "://" in self.remote or self.remote_is_path


class Hooks(_Strict):
    """Commands run inside the running workspace as dev, in the project's folder, with the network on.

    Each entry is a shell line, or a mapping of names to shell lines run in parallel (as Dev Containers'
    object form), or (start only) `{background: LINE}`, a server started detached and not waited for. Their
    output streams to `devenv up`; a failing hook, or one past its time limit, marks the workspace failed with
    its log, so a hook never holds the workspace for ever.
    """

    create: list[CreateHookStep] = Field(
        default_factory=list,
        description="once per home volume, after the code is in place (like postCreateCommand): pip install -e ., ...",
    )
    start: list[HookStep] = Field(
        default_factory=list,
        description="on every start (like postStartCommand); `- background: LINE` for a server like postAttachCommand",
    )
    timeout: HookTimeout = Field(
        default=None,
        description='the limit of each step, like "20m" (default 30m a create step, 10m a start step); past it the '
        "step's processes are killed and the workspace fails",
    )


class Wandb(_Strict):
    """Weights & Biases settings; the API key is a secret, never written here."""

    project: NonEmpty
    entity: str | None = None


class Tracking(_Strict):
    """Experiment tracking wired into the workspace."""

    wandb: Wandb | None = None


class CI(_Strict):
    """How CI tests the project inside the same image."""

    test: NonEmpty = Field(description='the test command, like "pytest -q"')


class Promote(_Strict):
    """How `devenv promote` turns the dev image into a production image."""

    entrypoint: Entrypoint = Field(description="production command (a string is split like a shell would)")
    strip: list[str] = Field(default_factory=list, description="extra paths or packages to drop from the image")

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_nonempty(cls, value: list[str]) -> list[str]:
        """An empty entrypoint would build an image that does nothing."""
        if not value:
            raise SpecValueError("entrypoint must not be empty")
        return value


class Spec(_Strict):
    """devenv.yaml: what a workspace is. Same spec + same lock = same image."""

    name: Name = Field(description="workspace name; becomes the Docker image name")
    template: str | None = Field(default=None, description="template it started from: minimal, sklearn, ...")
    base: Literal["cpu", "cuda"] = Field(
        default="cpu", description="base image recipe (images/NAME): cpu (Debian) or cuda (NVIDIA CUDA runtime)"
    )
    python: Python = Field(default="3.11", description='Python version, MAJOR.MINOR, like "3.11"')
    requirements: list[ProjectFile] = Field(
        default_factory=lambda: ["requirements.in"], description="requirement files, relative to devenv.yaml"
    )
    requirements_as_of: AsOf = Field(
        default=None,
        description="resolve the requirements against PyPI as it stood at the end of this day (UTC), like "
        '"2023-09-30": what the project\'s author installed; `devenv init` sets it from the date of the '
        "last commit that changed the dependency files",
    )
    old_pins: Literal["refuse", "move"] = Field(
        default="refuse",
        description="an exact pin that publishes no wheel for the base's Python (it was made for an older one): "
        "refuse stops the lock naming the nearest release that has one; move takes that release, and the "
        "lock names each move. `devenv init` writes move for a project written for an older Python",
    )
    apt: list[AptPackage] = Field(default_factory=list, description="extra Debian packages")
    setup: list[str] = Field(
        default_factory=list, description="extra shell steps run at image build time, with no network"
    )
    hooks: Hooks = Field(default_factory=lambda: Hooks(), description="commands run in the running workspace")
    dotfiles: StrictBool = Field(
        default=True,
        description="clone the owner's dotfiles repository (`devenv dotfiles set URL`) into the home and run "
        "its install script",
    )
    resources: Resources = Field(default_factory=Resources)
    backend: NonEmpty = Field(default="local", description="where the workspace runs")
    repo: Repo | None = None
    data: Data | None = Field(default=None, description="DVC data to pull; needs `repo`, where its .dvc files are")
    tracking: Tracking | None = None
    secrets: list[SecretName] = Field(default_factory=list, description="names of secrets injected at run time")
    ports: list[Port] = Field(default_factory=list, description="extra ports to expose")
    jupyter: StrictBool = Field(default=True, description="run JupyterLab")
    ssh: StrictBool = Field(default=True, description="run sshd")
    autostop: Autostop = Field(default=None, description='stop when idle this long, like "30m"; "off" never')
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict, description="environment variables")
    ci: CI | None = None
    promote: Promote | None = None

    @field_validator("data")
    @classmethod
    def _data_needs_repo(cls, data: Data | None, info: ValidationInfo) -> Data | None:
        """DVC pulls into a Git clone: the .dvc files that name the data live in the repo."""
        if data is not None and "repo" in info.data and info.data["repo"] is None:  # a failed repo is its own error
            raise SpecValueError(
                "needs a repo: DVC pulls into the clone that holds the .dvc files",
                hint="add `repo: {url: ...}` with the repository that tracks the data",
            )
        return data

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[int]) -> list[int]:
        """A port listed twice is a typo for another port, most likely."""
        seen: set[int] = set()
        for index, port in enumerate(ports):
            if port in seen:
                raise SpecValueError(f"port {port} is listed twice", sub=(index,))
            seen.add(port)
        return ports


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a mapping for `model` may hold (for did-you-mean hints)."""
    return list(model.model_fields)


__all__ = [
    "CI",
    "SPEC_FILENAME",
    "Data",
    "GpuRequest",
    "Hooks",
    "Promote",
    "Repo",
    "Resources",
    "Spec",
    "SpecValueError",
    "Tracking",
    "Wandb",
    "field_names",
    "name_hint",
    "slugify",
    "type_name",
    "valid_name",
]
