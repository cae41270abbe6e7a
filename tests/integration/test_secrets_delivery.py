"""Secrets reach a workspace's shells and Jupyter kernels from a tmpfs, and nowhere else: not the image,
the container's config, labels, logs, events, the daemon's log or its store in plain text, nor the
home volume. W&B runs made in a workspace carry its pins (image, lock, commit, data) as config and tags.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import secrets
import sqlite3
import tarfile
from collections.abc import Iterable
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from harness.devenvd import Devenvd
from harness.jupyter import RUN_CELL
from harness.versioning_world import GIT_TOKEN, VersioningWorld

pytestmark = pytest.mark.timeout(900)

SECRETS_DIR = "/run/devenv/secrets"


@pytest.fixture
def devenvd(devenvd_allowing_world: Devenvd) -> Devenvd:
    return devenvd_allowing_world


def set_secrets(devenvd: Devenvd, **values: str) -> None:
    for name, value in values.items():
        devenvd.cli("secret", "set", name, input=value + "\n", check=True)


def status(devenvd: Devenvd, name: str) -> dict:
    return json.loads(devenvd.cli("status", name, "--json", check=True).stdout)


def run(container: Container, argv: list[str], *, user: str = "dev") -> tuple[int, str, str]:
    code, (out, err) = container.exec_run(argv, user=user, workdir="/home/dev", demux=True)
    return code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")


def ok(container: Container, argv: list[str], *, user: str = "dev") -> str:
    code, out, err = run(container, argv, user=user)
    assert code == 0, f"{argv[:3]} exited {code}:\n{out}\n{err}"
    return out.strip()


def login(container: Container, script: str, *args: str) -> str:
    """A login shell as dev (what an SSH session gets); `args` become $0, $1, ..."""
    return ok(container, ["bash", "-lc", script, *args])


def encodings(value: str) -> list[bytes]:
    """The value, and the part of its base64 (standard and URL-safe, at each of the three alignments
    it can have inside a longer encoded text) that does not depend on the bytes around it."""
    raw = value.encode()
    found = [raw]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw)
            found.append(text[4 if shift else 0 : -4])
    return list(dict.fromkeys(found))


def leaks(where: str, data: bytes, needles: dict[str, list[bytes]]) -> list[str]:
    return [f"{name} in {where}" for name, forms in needles.items() if any(form in data for form in forms)]


def stream_leaks(where: str, chunks: Iterable[bytes], needles: dict[str, list[bytes]]) -> list[str]:
    """Search a stream too large to hold (an image's layers) without missing a match across chunks."""
    keep = max(len(form) for forms in needles.values() for form in forms) - 1
    tail, found, total = b"", set(), 0
    for chunk in chunks:
        total += len(chunk)
        window = tail + chunk
        found.update(name for name, forms in needles.items() if any(form in window for form in forms))
        tail = window[-keep:]
    assert total > 10_000_000, f"{where}: only {total} bytes streamed"  # the layers really were read
    return [f"{name} in {where}" for name in sorted(found)]


def stopped_secret_files(client: docker.DockerClient, container: str) -> list[str]:
    """What the stopped container's own filesystem holds under the secrets folder (its tmpfs is gone)."""
    try:
        bits, _stat = client.api.get_archive(container, f"{SECRETS_DIR}/API_SECRET")
        b"".join(bits)
        return ["API_SECRET"]
    except docker.errors.NotFound:
        pass
    try:
        bits, _stat = client.api.get_archive(container, SECRETS_DIR)
    except docker.errors.NotFound:
        return []
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        return [member.name for member in tar.getmembers() if not member.isdir()]


def test_secrets_reach_shells_and_kernels_and_nowhere_else(
    devenvd: Devenvd, world: VersioningWorld, client: docker.DockerClient, tmp_path: Path
) -> None:
    name = "sd-secrets"
    value, wandb_key = "s3cr3t-" + secrets.token_hex(8), secrets.token_hex(20)
    set_secrets(devenvd, GIT_TOKEN=GIT_TOKEN, WANDB_API_KEY=wandb_key, API_SECRET=value)
    project = world.project(world.dir_project, tmp_path / "p", name)
    devenvd.cli("up", cwd=project, check=True)
    container = client.containers.get(f"devenv-{name}")

    # delivered: a login shell, the file (dev's, 0400), on a tmpfs; an interactive bash; a Jupyter kernel
    assert login(container, 'echo "$API_SECRET"') == value
    assert login(container, 'echo "$WANDB_API_KEY"') == wandb_key
    assert ok(container, ["cat", f"{SECRETS_DIR}/API_SECRET"]) == value
    assert ok(
        container, ["stat", "-c", "%a %U", f"{SECRETS_DIR}/API_SECRET", f"{SECRETS_DIR}/env"], user="root"
    ).splitlines() == ["400 dev", "400 dev"]
    mounts = ok(container, ["cat", "/proc/mounts"]).splitlines()
    assert [line.split()[2] for line in mounts if line.split()[1] == SECRETS_DIR] == ["tmpfs"], mounts
    assert ok(container, ["bash", "-ic", 'echo "$API_SECRET"']).splitlines()[-1] == value
    assert ok(container, ["env"]).count(value) == 0  # an exec's own environment: the container's, no secret
    # JupyterLab started before the daemon placed the secrets: the kernel's wrapper read them as it started
    cell = ok(
        container, ["/opt/devenv/venv/bin/python", "-c", RUN_CELL, "import os; print(os.environ.get('API_SECRET'))"]
    )
    assert cell.splitlines()[-1] == value, cell

    # a new value reaches the next start; a stopped container keeps no secret on its own filesystem
    rotated = "s3cr3t-" + secrets.token_hex(8)
    set_secrets(devenvd, API_SECRET=rotated)
    assert login(container, 'echo "$API_SECRET"') == value  # changes apply from the next start
    devenvd.cli("stop", name, check=True)
    container.reload()
    assert container.status == "exited", container.status
    assert stopped_secret_files(client, container.id) == []
    devenvd.cli("start", name, check=True)
    container.reload()
    assert login(container, 'echo "$API_SECRET"') == rotated
    assert ok(container, ["cat", f"{SECRETS_DIR}/API_SECRET"]) == rotated

    values = {"API_SECRET": value, "API_SECRET (rotated)": rotated, "WANDB_API_KEY": wandb_key, "GIT_TOKEN": GIT_TOKEN}
    needles = {label: encodings(secret) for label, secret in values.items()}
    plain = {label: [secret.encode()] for label, secret in values.items()}
    found: list[str] = []

    # nowhere in the home volume or the pins file (as root: every file)
    for label, secret in values.items():
        code, out, err = run(container, ["grep", "-rlF", "--", secret, "/home/dev"], user="root")
        assert code in (0, 1), err
        found += [f"{label} in the home volume: {path}" for path in out.split()]
    pins = ok(container, ["cat", "/etc/devenv/workspace.env"])
    assert "DEVENV_IMAGE_HASH=" in pins, pins
    found += leaks("/etc/devenv/workspace.env", pins.encode(), needles)

    # the store holds the secret, encrypted: the row is there, and no file of it holds the value
    with contextlib.closing(sqlite3.connect(f"file:{devenvd.home / 'devenv.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("select ciphertext from secrets where name = 'API_SECRET'").fetchall()
    assert len(rows) == 1 and rows[0][0] and rotated not in rows[0][0] and value not in rows[0][0], rows
    store = sorted(devenvd.home.glob("devenv.db*"))
    assert devenvd.home / "devenv.db" in store
    for path in store:
        found += leaks(f"the store's {path.name}", path.read_bytes(), needles)

    # removed: gone from the next start on, and status and events say how to set it again
    devenvd.cli("secret", "rm", "API_SECRET", check=True)
    devenvd.cli("stop", name, check=True)
    devenvd.cli("start", name, check=True)
    container.reload()
    assert run(container, ["test", "-e", f"{SECRETS_DIR}/API_SECRET"], user="root")[0] == 1
    assert login(container, 'echo "${API_SECRET-unset}"') == "unset"
    assert login(container, 'echo "$WANDB_API_KEY"') == wandb_key  # the others still arrive
    shown = status(devenvd, name)
    assert "API_SECRET" in shown["secrets"]["missing"], shown["secrets"]
    assert "API_SECRET" not in shown["secrets"]["delivered"], shown["secrets"]
    events = devenvd.cli("events", name, "--limit", "1000", check=True).stdout
    assert "devenv secret set API_SECRET" in events, events

    # nowhere outside: the container's config, the volume, the image, logs, events, the daemon's files
    inspected = json.dumps(client.api.inspect_container(container.id)).encode()
    assert SECRETS_DIR.encode() in inspected and b"WANDB_MODE" in inspected  # the tmpfs, the spec's env
    found += leaks("docker inspect of the container", inspected, needles)
    volume = json.dumps(client.volumes.get(f"devenv-{name}-home").attrs).encode()
    assert b"Labels" in volume
    found += leaks("the home volume's labels", volume, needles)
    image = client.images.get(shown["image"])
    config = json.dumps([image.attrs, image.history()]).encode()
    assert b"workspace-env.sh" in config  # the history holds the build's steps
    found += leaks("the image's config and history", config, needles)
    found += stream_leaks("the image's layers", image.save(), plain)
    container_logs = container.logs()
    found += leaks("docker logs", container_logs, needles)
    found += leaks("devenv logs", devenvd.cli("logs", name, check=True).stdout.encode(), needles)
    found += leaks("devenv events", events.encode(), needles)
    every_event = json.dumps(devenvd.client.call("GET", "/v1/events?limit=10000")).encode()
    assert b"devenv secret set API_SECRET" in every_event
    found += leaks("GET /v1/events", every_event, needles)
    daemon_log = (devenvd.home / "devenvd.log").read_bytes()
    found += leaks("the daemon's log", daemon_log, needles)
    for path in store:
        found += leaks(f"the store's {path.name}", path.read_bytes(), needles)
    for path in sorted(devenvd.home.rglob("*")):  # and any other file the daemon keeps, but its key
        if path.is_file() and not path.is_symlink() and path.name != "secrets.key":
            found += leaks(f"the daemon's {path.relative_to(devenvd.home)}", path.read_bytes(), needles)
    assert not found, "\n".join(dict.fromkeys(found))


# Inside the workspace, in the clone: a W&B run, offline (the spec's env), with what a login shell sets.
WANDB_RUN = r"""
import hashlib, os
import wandb
run = wandb.init()
run.log({"loss": 0.5})
print("run-id", run.id)
print("key-sha256", hashlib.sha256(os.environ.get("WANDB_API_KEY", "").encode()).hexdigest())
run.finish()
"""

# Reads an offline run back: its tags and config from the run record of run-ID.wandb (a leveldb-format
# log of wandb's protobuf records; wandb 0.31 ships no Python reader for it), and files/config.yaml.
WANDB_READ = r"""
import glob, json, os, struct, sys
from wandb.proto import wandb_internal_pb2 as pb
BLOCK, HEADER, FULL, LAST = 32768, 7, 1, 4
(folder,) = glob.glob(os.path.join(sys.argv[1], "wandb", "offline-run-*-" + sys.argv[2]))
with open(os.path.join(folder, "run-" + sys.argv[2] + ".wandb"), "rb") as handle:
    data = handle.read()
assert data[:4] == b":W&B", data[:7]
index, parts, tags, config = HEADER, [], None, {}
while index + HEADER <= len(data):
    left = BLOCK - index % BLOCK
    if left < HEADER:
        index += left
        continue
    _crc, length, kind = struct.unpack("<IHB", data[index:index + HEADER])
    index += HEADER
    if kind == 0 and length == 0:
        index += left - HEADER
        continue
    parts.append(data[index:index + length])
    index += length
    if kind not in (FULL, LAST):
        continue
    record = pb.Record()
    record.ParseFromString(b"".join(parts))
    parts = []
    which = record.WhichOneof("record_type")
    if which == "run":
        tags = list(record.run.tags)
        config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    elif which == "config":
        config.update({item.key: json.loads(item.value_json) for item in record.config.update})
yaml_path = os.path.join(folder, "files", "config.yaml")
print(json.dumps({"folder": folder, "tags": tags, "config": config,
                  "config_yaml": open(yaml_path).read() if os.path.exists(yaml_path) else None}))
"""


def test_wandb_runs_carry_the_workspace_pins(
    devenvd: Devenvd, world: VersioningWorld, client: docker.DockerClient, tmp_path: Path
) -> None:
    name = "sd-wandb"
    wandb_key = secrets.token_hex(20)
    set_secrets(devenvd, GIT_TOKEN=GIT_TOKEN, API_SECRET="x", WANDB_API_KEY=wandb_key)
    project = world.project(world.dir_project, tmp_path / "p", name)
    devenvd.cli("up", cwd=project, check=True)
    container = client.containers.get(f"devenv-{name}")
    shown = status(devenvd, name)
    assert shown["image_hash"] and shown["lock_hash"] and shown["data"]["hash"], shown

    made = dict(
        line.split(" ", 1)
        for line in login(container, 'cd "$HOME/proj-dir" && exec /opt/venv/bin/python -c "$0"', WANDB_RUN).splitlines()
        if line.startswith(("run-id ", "key-sha256 "))
    )
    run_id = made["run-id"]
    assert made["key-sha256"] == hashlib.sha256(wandb_key.encode()).hexdigest()  # the key reached the run

    read = json.loads(ok(container, ["/opt/venv/bin/python", "-c", WANDB_READ, "/home/dev/proj-dir", run_id]))
    pins = {
        "workspace": name,
        "image_hash": shown["image_hash"],
        "lock_hash": shown["lock_hash"],
        "git_commit": world.dir_repo.commit,
        "data_hash": shown["data"]["hash"],
    }
    devenv_config = read["config"].get("devenv") or {}
    assert {key: devenv_config.get(key) for key in pins} == pins, read["config"]
    if read["config_yaml"] is not None:  # an online run (or an older wandb) also writes it out
        assert all(pinned in read["config_yaml"] for pinned in pins.values()), read["config_yaml"]
    tags = read["tags"] or []
    for tag in (f"workspace:{name}", f"commit:{world.dir_repo.commit[:12]}", f"image:{shown['image_hash'][:12]}"):
        assert tag in tags, tags

    # the key reached the run's environment, never its files (nor wandb's logs beside them)
    code, out, err = run(container, ["grep", "-rlF", "--", wandb_key, "/home/dev/proj-dir/wandb"], user="root")
    assert code == 1, f"WANDB_API_KEY written in the run's files: {out}{err}"

    # a run from a plain exec (no login shell sourced anything) with tags of its own: still pinned
    code, out, err = run(
        container,
        ["/opt/venv/bin/python", "-c", WANDB_RUN.replace("wandb.init()", "wandb.init(tags=['mine'])")],
        user="dev",
    )
    assert code == 0, out + err
    plain_id = next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("run-id "))
    plain = json.loads(ok(container, ["/opt/venv/bin/python", "-c", WANDB_READ, "/home/dev", plain_id]))
    assert "mine" in plain["tags"] and f"workspace:{name}" in plain["tags"], plain["tags"]
    assert (plain["config"].get("devenv") or {}).get("git_commit") == world.dir_repo.commit

    record = json.loads(devenvd.cli("snapshot", name, "--json", check=True).stdout)
    assert run_id in record["wandb_runs"] and plain_id in record["wandb_runs"], record["wandb_runs"]
