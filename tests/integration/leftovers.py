"""What an integration run left on the shared Docker engine (tests/integration/conftest.py's guard).

Other people use the same engine, so only what appeared during the run counts: the engine's containers,
volumes and networks are listed at the start and again at the end, and what is new, still there, and
devenv's (a name starting with `devenv-`, or a label whose key starts with `devenv`: the backends'
`devenv.workspace`, `devenv.role`... and the test fixtures' `devenv-test`) is left behind. Images are not
counted: built ones are kept on purpose, for the next run.

The engine cannot say which client made an object, so another test run on this machine at the same time
(another checkout, another person) makes its objects look like this run's: those runs are noticed
(`other_runs`, sampled at the start, after each test and at the end) and then what is left is reported
without failing the run. Alone on the engine (CI), or with DEVENV_LEFTOVERS=fail, a leftover fails it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("container", "volume", "network")


@dataclass(frozen=True)
class EngineObject:
    kind: str  # one of KINDS
    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.id

    def devenvs(self) -> bool:
        return self.name.lstrip("/").startswith("devenv-") or any(key.startswith("devenv") for key in self.labels)

    def __str__(self) -> str:
        shown = ", ".join(f"{key}={value}" for key, value in sorted(self.labels.items()) if key.startswith("devenv"))
        return f"{self.kind} {self.name} ({self.id[:12]}{'; ' + shown if shown else ''})"


def snapshot(client: Any) -> list[EngineObject]:
    """Every container (running or not), volume and network on the engine `client` (a docker.DockerClient)."""
    api = client.api
    found = [
        EngineObject("container", item["Id"], (item.get("Names") or [""])[0].lstrip("/"), item.get("Labels") or {})
        for item in api.containers(all=True)
    ]
    found += [
        EngineObject(
            "volume",
            f"{item['Name']}@{item.get('CreatedAt', '')}",
            item["Name"],  # a remade one is new
            item.get("Labels") or {},
        )
        for item in api.volumes().get("Volumes") or []
    ]
    found += [EngineObject("network", item["Id"], item["Name"], item.get("Labels") or {}) for item in api.networks()]
    return found


def left_behind(
    before: Iterable[EngineObject], after: Iterable[EngineObject], *, kept: Collection[str] = ()
) -> list[EngineObject]:
    """What is in `after` but was not in `before` (by kind and id: a removed and remade name counts), is
    devenv's, and is not named in `kept` (what the fixtures keep for reuse on purpose); sorted."""
    seen = {item.key for item in before}
    return sorted(
        (item for item in after if item.key not in seen and item.devenvs() and item.name not in kept),
        key=lambda item: (KINDS.index(item.kind) if item.kind in KINDS else len(KINDS), item.name),
    )


def describe(left: Iterable[EngineObject]) -> list[str]:
    """Lines for the run's summary: what to look at, then one line per object."""
    items = list(left)
    if not items:
        return []
    return [
        f"{len(items)} Docker object(s) made during this run are still on the engine (a test or fixture "
        "did not remove what it made; if another run on this engine made them at the same time, rerun alone):",
        *(f"  {item}" for item in items),
    ]


# -- other test runs on this machine -------------------------------------------------------------------

Processes = Mapping[int, tuple[int, Sequence[str]]]  # pid -> (parent pid, argv)
PYTEST_NAMES = ("pytest", "py.test")


def is_pytest(argv: Sequence[str]) -> bool:
    """`pytest ...`, `python -m pytest ...` or `python /path/to/pytest ...` (not `grep pytest`)."""
    if not argv:
        return False
    if Path(argv[0]).name.startswith("python"):
        rest = list(argv[1:])
        return rest[:2] == ["-m", "pytest"] or (bool(rest) and Path(rest[0]).name in PYTEST_NAMES)
    return Path(argv[0]).name in PYTEST_NAMES


def other_runs(processes: Processes, me: int) -> set[int]:
    """Pids of pytest processes that are not part of this run: this run is everything under `me`'s topmost
    pytest ancestor (xdist workers, a test's own pytest, `timeout ... pytest` above it)."""

    def ancestry(pid: int) -> list[int]:
        found: list[int] = []
        while pid in processes and pid not in found:
            found.append(pid)
            pid = processes[pid][0]
        return found

    root = me
    for pid in ancestry(me):
        if is_pytest(processes[pid][1]):
            root = pid
    return {pid for pid, (_, argv) in processes.items() if is_pytest(argv) and root not in ancestry(pid)}


def read_processes(proc: Path = Path("/proc")) -> dict[int, tuple[int, list[str]]]:
    """Every process this one can see: its parent and its argv (Linux's /proc; elsewhere none)."""
    found: dict[int, tuple[int, list[str]]] = {}
    for entry in proc.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"; comm may hold spaces
        found[int(entry.name)] = (parent, [arg.decode(errors="replace") for arg in argv if arg])
    return found


def describe_other_runs(processes: Processes, pids: Iterable[int]) -> dict[int, str]:
    """pid -> its command line (shortened), for the report."""
    return {pid: " ".join(processes[pid][1])[:160] for pid in sorted(pids) if pid in processes}
