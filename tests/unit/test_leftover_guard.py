"""The integration run's guard against leftovers (tests/integration/leftovers.py): only what the run made,
still there and devenv's, counts; what others made on the shared engine, before or untouched, does not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).parents[1] / "integration" / "leftovers.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("leftovers_under_test", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


leftovers = _load()
Obj = leftovers.EngineObject


def test_only_what_the_run_made_and_left_and_is_devenvs_counts() -> None:
    before = [
        Obj("container", "c1", "devenv-it-host-a", {"devenv-test": "ssh-host"}),  # there already
        Obj("volume", "devenv-old-home@t0", "devenv-old-home", {"devenv.role": "home"}),
        Obj("network", "n1", "bridge"),
    ]
    after = [
        *before,
        Obj("container", "c2", "devenv-it-keep", {"devenv.workspace": "it-keep"}),  # by name and label
        Obj("container", "c3", "someone-elses", {}),  # not devenv's: another user's
        Obj("container", "c4", "quirky_name", {"devenv.role": "workspace"}),  # by label only
        Obj("volume", "devenv-it-keep-home@t1", "devenv-it-keep-home", {}),  # by name only
        Obj("network", "n2", "devenv-it-hosts", {"devenv-test": "ssh-host"}),  # kept for reuse on purpose
        Obj("network", "n3", "devenv-it-keep-net", {"devenv.workspace": "it-keep"}),
    ]
    left = leftovers.left_behind(before, after, kept=("devenv-it-hosts",))
    assert [(item.kind, item.name) for item in left] == [
        ("container", "devenv-it-keep"),
        ("container", "quirky_name"),
        ("volume", "devenv-it-keep-home"),
        ("network", "devenv-it-keep-net"),
    ]
    lines = leftovers.describe(left)
    assert "4 Docker object(s) made during this run" in lines[0]
    assert lines[1] == "  container devenv-it-keep (c2; devenv.workspace=it-keep)"


@pytest.mark.parametrize("after_ids", [["c1"], []])
def test_nothing_new_or_everything_removed_leaves_nothing(after_ids: list[str]) -> None:
    before = [Obj("container", "c1", "devenv-it-x", {})]
    after = [Obj("container", name, "devenv-it-x", {}) for name in after_ids]
    assert leftovers.left_behind(before, after) == []
    assert leftovers.describe([]) == []


def test_a_name_removed_and_made_again_during_the_run_is_new() -> None:
    before = [
        Obj("container", "old-id", "devenv-it-keep", {}),
        Obj("volume", "devenv-it-keep-home@t0", "devenv-it-keep-home", {}),
    ]
    after = [
        Obj("container", "new-id", "devenv-it-keep", {}),
        Obj("volume", "devenv-it-keep-home@t9", "devenv-it-keep-home", {}),
    ]
    assert [item.id for item in leftovers.left_behind(before, after)] == ["new-id", "devenv-it-keep-home@t9"]


class _Api:
    """The three listing calls of docker's low-level API the snapshot makes, answering as the engine does."""

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        assert all  # stopped containers are left behind too
        return [
            {"Id": "c" * 64, "Names": ["/devenv-it-keep"], "Labels": {"devenv.workspace": "it-keep"}},
            {"Id": "d" * 64, "Names": None, "Labels": None},
        ]

    def volumes(self) -> dict[str, Any]:
        return {"Volumes": [{"Name": "devenv-it-keep-home", "CreatedAt": "2026-12-06T17:06:32Z", "Labels": None}]}

    def networks(self) -> list[dict[str, Any]]:
        return [{"Id": "n" * 64, "Name": "devenv-it-keep-net", "Labels": {}}]


def test_the_snapshot_reads_containers_volumes_and_networks() -> None:
    class Client:
        api = _Api()

    found = leftovers.snapshot(Client())
    assert [(item.kind, item.name) for item in found] == [
        ("container", "devenv-it-keep"),
        ("container", ""),
        ("volume", "devenv-it-keep-home"),
        ("network", "devenv-it-keep-net"),
    ]
    assert found[2].id == "devenv-it-keep-home@2026-12-06T17:06:32Z"
    assert [item.name for item in leftovers.left_behind([], found)] == [
        "devenv-it-keep",
        "devenv-it-keep-home",
        "devenv-it-keep-net",
    ]


def test_other_test_runs_are_those_outside_this_runs_process_tree() -> None:
    processes = {
        1: (0, ["/sbin/init"]),
        10: (1, ["bash"]),
        11: (10, ["timeout", "900", "python", "-m", "pytest", "tests/integration"]),
        12: (11, ["/usr/bin/python3", "-m", "pytest", "tests/integration"]),  # this run
        13: (12, ["python", "-m", "pytest", "-q", "inner"]),  # a test's own pytest: part of this run
        14: (12, ["devenvd"]),
        20: (1, ["/root/.pyenv/versions/3.11.7/bin/python", "-m", "pytest", "tests/unit"]),  # another run
        21: (1, ["/usr/bin/python3", "/usr/local/bin/pytest", "-x"]),  # another, by its script
        22: (1, ["pytest"]),  # and another
        23: (1, ["grep", "pytest"]),  # not a run
        24: (1, ["python", "-c", "import pytest"]),  # not a run
    }
    assert leftovers.other_runs(processes, 12) == {20, 21, 22}
    assert leftovers.other_runs(processes, 13) == {20, 21, 22}  # from inside, the same run
    assert set(leftovers.describe_other_runs(processes, {20, 99})) == {20}  # one gone meanwhile is left out


def test_processes_are_read_from_proc(tmp_path: Path) -> None:
    for pid, stat, argv in [
        (7, "7 (python) S 3 7 7", b"python\0-m\0pytest\0"),
        (8, "8 (tmux: server (1)) S 7 8 8", b"tmux\0"),
    ]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat)
        (tmp_path / str(pid) / "cmdline").write_bytes(argv)
    (tmp_path / "9").mkdir()  # gone while read: no files
    assert leftovers.read_processes(tmp_path) == {7: (3, ["python", "-m", "pytest"]), 8: (7, ["tmux"])}
