"""What the slurm backend needs to know about a cluster: typed, checked once, so a typo fails at start-up and
not in the middle of a submit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from devenv.backends.base import BackendFactory
from devenv.backends.ssh.target import SshTarget, parse_target
from devenv.errors import UsageError

if TYPE_CHECKING:
    from devenv.backends.base import Backend

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # Slurm's --time: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class SlurmConfig:
    """One cluster: its login node, where jobs go (partition, account, QOS) and the folder every node shares.

    `shared` holds `devenv/<workspace>/` (request, job script, home) and `images/<image id>.tar`: compute
    nodes' own home folders are not shared, so nothing a job needs may live anywhere else.
    """

    login: str  # ssh://user@login-node[:port]
    shared: str  # an absolute folder mounted on the login node and every compute node
    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # the job's time limit when the spec names none (resources.time); None: the partition's

    def __post_init__(self) -> None:
        parse_target(self.login)  # raises UsageError with what to type
        if not self.shared.startswith("/") or "'" in self.shared or ".." in self.shared.split("/"):
            raise UsageError(f"slurm: shared folder {self.shared!r} must be an absolute path without quotes or '..'")
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not _WORD.fullmatch(value):
                raise UsageError(f"slurm: {name} {value!r} is not a Slurm name (letters, digits, _ . -)")
        if self.time is not None and not _TIME.fullmatch(self.time):
            raise UsageError(
                f"slurm: time {self.time!r} is not a Slurm time limit",
                hint="write it as Slurm's --time does: 90, 8:00:00 or 2-00:00:00",
            )

    @property
    def target(self) -> SshTarget:
        return parse_target(self.login)

    @property
    def root(self) -> str:
        """The folder of every workspace's files."""
        return f"{self.shared.rstrip('/')}/devenv"

    @property
    def images(self) -> str:
        """Image archives, named by image id: shipped once, loaded by any node."""
        return f"{self.shared.rstrip('/')}/images"

    def folder(self, workspace: str) -> str:
        return f"{self.root}/{workspace}"

    def home(self, workspace: str) -> str:
        """The workspace's home: a plain folder on the shared storage, outliving every job."""
        return f"{self.folder(workspace)}/home"


class SlurmOptions(BaseModel):
    """What a daemon.yaml entry of `type: slurm` takes (unknown keys refused); values are checked by SlurmConfig."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    login: str = Field(description="the login node: ssh://USER@HOST[:PORT]")
    shared: str = Field(description="a folder mounted on the login node and every compute node")
    identity: str | None = Field(default=None, description="the private key for the login node")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = Field(default=None, description="time limit when the spec names none, as Slurm's --time")


def _create(name: str, options: SlurmOptions) -> Backend:
    from devenv.backends.slurm.backend import SlurmBackend

    config = SlurmConfig(**options.model_dump(exclude={"identity"}))
    return SlurmBackend(name, config, identity=options.identity)


SLURM = BackendFactory(SlurmOptions, _create)
