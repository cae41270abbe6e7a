"""/dev/shm, ulimits and lifecycle hooks in a real workspace: the real devenvd, the real `devenv` CLI and
the real engine. A 1 GiB shared-memory block (what PyTorch's DataLoader workers pass batches through) is
written and read inside; hooks install a package from PyPI with the network on, run once per home or on
every start, and a failing one leaves the workspace failed with its output's tail."""

from __future__ import annotations

import json
from pathlib import Path

import docker

from devenv.backends.base import container_name
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd

GIB = 1024**3
# Writes then reads a 1 GiB SharedMemory block in 64 MiB chunks; prints JSON seconds (the figure).
SHM_PY = """
import json, time
from multiprocessing import shared_memory
size, chunk = 1 << 30, 64 << 20
began = time.perf_counter()
block = shared_memory.SharedMemory(create=True, size=size)
try:
    data = b"\\x5a" * chunk
    for offset in range(0, size, chunk):
        block.buf[offset:offset + chunk] = data
    wrote = time.perf_counter()
    seen = sum(bytes(block.buf[offset:offset + chunk]).count(0x5a) for offset in range(0, size, chunk))
    read = time.perf_counter()
finally:
    block.close()
    block.unlink()
print(json.dumps({"bytes": seen, "write_s": wrote - began, "read_s": read - wrote}))
"""
# This machine's egress re-signs TLS with a CA the workspace image does not hold: pip is told to trust PyPI.
PIP = "pip install --trusted-host pypi.org --trusted-host files.pythonhosted.org six"  # into the venv: dev's


def shm_figures(devenvd: Devenvd, workspace: str) -> dict[str, float]:
    ran = devenvd.cli("exec", workspace, "--", "python3", "-c", SHM_PY, check=True)
    figures: dict[str, float] = json.loads(ran.stdout.strip().splitlines()[-1])
    return figures


def test_shm_and_ulimits_reach_the_workspace(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient
) -> None:
    limits = "  ulimits:\n    memlock: 4194304\n    stack: 67108864\n"  # memlock below any engine's own hard limit
    folder = copy_project(light_image, tmp_path / "p", "it-shm", replace={"memory: 4Gi\n": "memory: 4Gi\n" + limits})
    devenvd.cli("up", cwd=folder, check=True)
    host_config = client.containers.get(container_name("it-shm")).attrs["HostConfig"]
    assert host_config["ShmSize"] == 2 * GIB  # half the 4Gi memory limit
    assert {item["Name"]: item["Hard"] for item in host_config["Ulimits"]} == {"memlock": 4194304, "stack": 67108864}
    inside = devenvd.cli(
        "exec",
        "it-shm",
        "--",
        "bash",
        "-c",
        "df -B1 --output=size /dev/shm | tail -1; ulimit -l; ulimit -s",
        check=True,
    ).stdout.split()
    assert inside == [str(2 * GIB), "4096", "65536"]
    figures = shm_figures(devenvd, "it-shm")
    assert figures["bytes"] == GIB
    print(f"\n1 GiB SharedMemory in the workspace: write {figures['write_s']:.2f} s, read {figures['read_s']:.2f} s")


def test_hooks_run_once_per_home_and_on_every_start(
    devenvd: Devenvd, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    hooks = f"""\
hooks:
  create:
    - echo created >> ~/hooks.log
    - {PIP}
  start:
    - echo started >> ~/hooks.log
    - a: echo from-a >> ~/parallel.log
      b: echo from-b >> ~/parallel.log
"""
    folder = copy_project(light_image, tmp_path / "p", "it-hooks", extra=hooks)
    up = devenvd.cli("up", cwd=folder, check=True)
    assert "hooks.create: 2 steps ran in" in up.stderr and "hooks.start: 2 steps ran in" in up.stderr, up.stderr

    def log() -> list[str]:
        return devenvd.cli("exec", "it-hooks", "--", "cat", "/home/dev/hooks.log", check=True).stdout.split()

    assert log() == ["created", "started"]
    imported = devenvd.cli("exec", "it-hooks", "--", "python", "-c", "import six; print(six.__file__)", check=True)
    assert imported.stdout.startswith("/opt/venv/lib/")  # installed by the create hook as dev, from PyPI
    parallel = devenvd.cli("exec", "it-hooks", "--", "cat", "/home/dev/parallel.log", check=True).stdout.split()
    assert sorted(parallel) == ["from-a", "from-b"]

    devenvd.cli("stop", "it-hooks", check=True)
    devenvd.cli("start", "it-hooks", check=True)
    assert log() == ["created", "started", "started"]  # create: once per home; start: every start
    events = devenvd.cli("events", "it-hooks", check=True).stdout
    assert events.count("hooks.create: 2 steps ran in") == 1 and events.count("hooks.start: 2 steps ran in") == 2


def test_a_failing_create_hook_leaves_the_workspace_failed_with_its_output(
    devenvd: Devenvd, tmp_path: Path, light_image: WorkspaceImage, client: docker.DockerClient
) -> None:
    hooks = """\
hooks:
  create:
    - echo preparing
    - 'echo "ERROR: the step broke" >&2; exit 7'
  start:
    - touch ~/started
"""
    folder = copy_project(light_image, tmp_path / "p", "it-hookfail", extra=hooks)
    up = devenvd.cli("up", cwd=folder)
    assert up.returncode != 0
    said = up.stdout + up.stderr
    assert 'hooks.create step 2 (`echo "ERROR: the step broke" >&2; exit 7`) exited 7' in said
    assert "ERROR: the step broke" in said

    [listed] = [
        item
        for item in json.loads(devenvd.cli("ls", "--all", "--json", check=True).stdout)
        if item["name"] == "it-hookfail"
    ]
    assert listed["state"] == "failed"
    assert listed["reason"].endswith("exited 7; output ends: ERROR: the step broke")
    assert "ERROR: the step broke" in devenvd.cli("ls", check=True).stdout
    assert client.containers.get(container_name("it-hookfail")).status == "running"  # kept for a look
    status = devenvd.cli("status", "it-hookfail").stdout
    assert "failed" in status and "ERROR: the step broke" in status
