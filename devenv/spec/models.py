"""The one strict model of devenv.yaml.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Validators accept the human forms ("A100:2", "30m", "16Gi") and store plain values; a dump
(`model_dump(mode="json")`) validates back to an equal Spec. The JSON Schema for editors is
generated from these classes (see schema.py), never written by hand.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from devenv.confinement import name_problem, project_path_problem
from devenv.spec.units import GpuRequest, parse_duration, parse_gpu, parse_size

SPEC_FILENAME = "devenv.yaml"

# matched with fullmatch everywhere: `$` would let a trailing newline through
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PYTHON_RE = re.compile(r"[0-9]+\.[0-9]+")
_APT_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SECRET_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FOLDER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_CPU = 4096.0


class SpecValueError(ValueError):
    """A validation failure that carries a hint, and optionally a deeper location (`sub`) than its field.

    The loader reads both back out of pydantic's error context; plain pydantic users still get the message.
    """

    def __init__(self, message: str, *, hint: str | None = None, sub: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.hint = hint
        self.sub = sub


def slugify(text: str) -> str:
    """A valid spec name from free text ("My Project" -> "my-project"); empty when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:63].rstrip("-")


def type_name(value: object) -> str:
    """How a YAML user would call a value's type."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string" if isinstance(value, str) else type(value).__name__


# ---- field validators (before: they see raw YAML values) ----


def valid_name(value: str) -> bool:
    """A workspace name: lowercase letters, digits and '-', at most 63, starting with a letter or digit."""
    return _NAME_RE.fullmatch(value) is not None


def name_hint(value: str) -> str:
    """What a workspace name may be, and a suggestion made from `value` when one can be."""
    suggestion = slugify(value)
    hint = "lowercase letters, digits and '-', at most 63, starting with a letter or digit"
    return hint + "; it becomes the Docker image name" + (f"; try {suggestion!r}" if suggestion else "")


def _name(value: object) -> object:
    if isinstance(value, str) and not valid_name(value):
        raise SpecValueError(f"{value!r} is not a valid name", hint=name_hint(value))
    return value


def _python(value: object) -> object:
    """MAJOR.MINOR as a string; an unquoted YAML float is fine only when it reads back the same."""
    if isinstance(value, int):  # bools too
        raise SpecValueError(f'expected MAJOR.MINOR like "3.11", got {value!r}', hint='quote it: "3.11"')
    if isinstance(value, float):
        text = str(value)  # the shortest text that reads back as this float
        if not _PYTHON_RE.fullmatch(text):
            raise SpecValueError(f'expected MAJOR.MINOR like "3.11", got {value!r}', hint='quote it: "3.11"')
        return text
    if isinstance(value, str) and not _PYTHON_RE.fullmatch(value.strip()):
        raise SpecValueError(f'expected MAJOR.MINOR like "3.11", got {value!r}')
    return value.strip() if isinstance(value, str) else value


def _apt(value: object) -> object:
    if isinstance(value, str) and not _APT_RE.fullmatch(value):
        raise SpecValueError(
            f"{value!r} is not a Debian package name",
            hint="lowercase letters, digits, '+', '-', '.'; versions are pinned in devenv.lock",
        )
    return value


def _secret(value: object) -> object:
    if isinstance(value, str):
        if "=" in value or ":" in value:
            shown = re.split(r"[=:]", value, maxsplit=1)[0].strip()
            raise SpecValueError(
                f"secret entry '{shown}=…' looks like it holds a value",
                hint="list only secret names; set values with `devenv secret set NAME`",
            )
        if not _SECRET_RE.fullmatch(value):
            raise SpecValueError(
                f"{value!r} is not a secret name",
                hint="use env-var style: A-Z, 0-9 and '_', like WANDB_API_KEY",
            )
    return value


def _repo_path(value: object) -> object:
    if isinstance(value, str) and not _FOLDER_RE.fullmatch(value):
        raise SpecValueError(f"{value!r} is not a folder name", hint="one folder under the home, like 'project'")
    return value


def _port(value: object) -> object:
    if isinstance(value, bool) or (isinstance(value, int) and not 1 <= value <= 65535):
        raise SpecValueError(f"port must be a number from 1 to 65535, got {value!r}")
    return value


def _env_key(value: object) -> object:
    if isinstance(value, str) and not _ENV_KEY_RE.fullmatch(value):
        raise SpecValueError(
            f"{value!r} is not an environment variable name", hint="use letters, digits and '_'"
        )
    return value


def _env_value(value: object) -> object:
    """Numbers and booleans become their text: an env var is always a string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        raise SpecValueError("empty value", hint='write "" for an empty string')
    return value


def _gpu(value: object) -> object:
    if value is None or isinstance(value, dict | GpuRequest):
        return value
    if isinstance(value, str | int):
        return parse_gpu(value)
    raise SpecValueError(f'expected a GPU request like "A100:2" or 2, got {type_name(value)}')


def _cpu(value: object) -> object:
    number = value
    if isinstance(value, str):  # pydantic reads "1e400" as inf: judged as the number it becomes
        try:
            number = float(value)
        except ValueError:
            return value
    if isinstance(number, bool) or (isinstance(number, int | float) and not 0 < number <= MAX_CPU):  # nan, inf
        raise SpecValueError(f"cpu must be a number more than 0 and at most {MAX_CPU:g}, got {value!r:.40}")
    return value


def _size(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, str | int):
        return parse_size(value)
    raise SpecValueError(f'expected a size like "16Gi", got {type_name(value)}')


def _autostop(value: object) -> object:
    """ "off", null and YAML's `off`/`false` (read as False) all disable autostop."""
    if (
        value is None
        or value is False
        or (isinstance(value, str) and value.strip().lower() in ("off", "never"))
    ):
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise SpecValueError(str(exc), hint='write "off" to disable autostop') from None
    raise SpecValueError(f'expected a duration like "30m" or "off", got {type_name(value)}')


def _entrypoint(value: object) -> object:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise SpecValueError(f"cannot split entrypoint: {exc}", hint="write it as a list") from None
    return value


def _nonempty(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise SpecValueError("must not be empty")
    return value


def _project_file(value: object) -> object:
    """A file of the project: relative to the spec's folder and inside it (the daemon opens nothing else)."""
    if isinstance(value, str) and (problem := project_path_problem(value)) is not None:
        raise SpecValueError(f"{value!r} {problem}", hint="name a file in the project folder, relative to devenv.yaml")
    return value


def _host_path(value: object) -> object:
    """A folder on the engine's host, by its own plain path (the daemon checks that its admin allows it)."""
    if isinstance(value, str) and value.startswith("/"):
        problem = name_problem(value) or ("must not contain '..'" if ".." in value.split("/") else None)
        if problem is not None:
            raise SpecValueError(f"the folder {problem}", hint="write the folder's own absolute path")
    return value


Name = Annotated[str, BeforeValidator(_name)]
Python = Annotated[str, BeforeValidator(_python, json_schema_input_type=str | float)]
AptPackage = Annotated[str, BeforeValidator(_apt)]
SecretName = Annotated[str, BeforeValidator(_secret)]
Port = Annotated[int, BeforeValidator(_port)]
RepoPath = Annotated[str, BeforeValidator(_repo_path)]
EnvKey = Annotated[str, BeforeValidator(_env_key)]
EnvValue = Annotated[str, BeforeValidator(_env_value, json_schema_input_type=str | int | float | bool)]
NonEmpty = Annotated[str, BeforeValidator(_nonempty)]
ProjectFile = Annotated[str, BeforeValidator(_project_file), BeforeValidator(_nonempty)]
HostPathOrUrl = Annotated[str, BeforeValidator(_host_path), BeforeValidator(_nonempty)]
Size = Annotated[int | None, BeforeValidator(_size, json_schema_input_type=str | int | None)]
Gpu = Annotated[GpuRequest | None, BeforeValidator(_gpu, json_schema_input_type=str | int | None)]
Cpu = Annotated[float | None, BeforeValidator(_cpu)]
Autostop = Annotated[int | None, BeforeValidator(_autostop, json_schema_input_type=str | int | None)]
Entrypoint = Annotated[list[str], BeforeValidator(_entrypoint, json_schema_input_type=str | list[str])]


class _Strict(BaseModel):
    """Shared config: unknown keys are errors at every depth."""

    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """What the workspace needs from its host."""

    gpu: Gpu = Field(default=None, description='GPUs: "A100:2", "A100" (one), or a count like 2')
    cpu: Cpu = Field(default=None, description="CPU cores (may be fractional)")
    memory: Size = Field(default=None, description='memory limit, like "16Gi" (stored in bytes)')
    disk: Size = Field(default=None, description='disk for the home volume, like "100Gi" (stored in bytes)')

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
    ref: str | None = Field(
        default=None, description="branch, tag or commit; the default branch when omitted"
    )
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
    strip: list[str] = Field(
        default_factory=list, description="extra paths or packages to drop from the image"
    )

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
    apt: list[AptPackage] = Field(default_factory=list, description="extra Debian packages")
    setup: list[str] = Field(default_factory=list, description="extra shell steps run at image build time")
    resources: Resources = Field(default_factory=Resources)
    backend: NonEmpty = Field(default="local", description="where the workspace runs")
    repo: Repo | None = None
    data: Data | None = Field(default=None, description="DVC data to pull; needs `repo`, where its .dvc files are")
    tracking: Tracking | None = None
    secrets: list[SecretName] = Field(
        default_factory=list, description="names of secrets injected at run time"
    )
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
            raise SpecValueError("needs a repo: DVC pulls into the clone that holds the .dvc files",
                                 hint="add `repo: {url: ...}` with the repository that tracks the data")
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
    "CI", "SPEC_FILENAME", "Data", "GpuRequest", "Promote", "Repo", "Resources", "Spec", "SpecValueError",
    "Tracking", "Wandb", "field_names", "slugify", "valid_name",
]
