"""devcontainer.json keeps its meaning (issue 18): GPUs, /dev/shm and ulimits from runArgs, the cuda base from
CUDA images and features, lifecycle commands in the running workspace (never build-time setup), and a warning
that names the key and the reason for everything not carried. The files are shaped like real ones (Microsoft's
python/CUDA templates, NVIDIA and PyTorch images, GPU runArgs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.build.base import load_recipe
from devenv.spec import SPEC_FILENAME, GpuRequest, Spec, import_devcontainer, load_spec
from devenv.spec.devcontainer import strip_jsonc
from devenv.spec.devcontainer_features import base_python, cuda_base_version
from devenv.spec.devcontainer_runargs import docker_size

GIB = 2**30


def imported(
    tmp_path: Path,
    config: dict[str, Any] | str,
    dockerfile: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Import a devcontainer.json (and Dockerfile) from a fresh project; the data must validate and round trip."""
    folder = tmp_path / "proj" / ".devcontainer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "devcontainer.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)
    data, warnings = import_devcontainer(folder / "devcontainer.json")
    spec = Spec.model_validate(data)
    (tmp_path / "proj" / "requirements.in").write_text("")
    (tmp_path / "proj" / SPEC_FILENAME).write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_spec(tmp_path / "proj" / SPEC_FILENAME) == spec
    return data, warnings


def said(warnings: list[str], *parts: str) -> bool:
    return any(all(part in warning for part in parts) for warning in warnings)


# ---- runArgs ----


@pytest.mark.parametrize(
    "run_args",
    [
        ["--gpus", "all", "--shm-size", "16gb"],
        ["--gpus=all", "--shm-size=16gb"],
        ["--gpus all", "--shm-size 16g"],  # one entry holding flag and value: docker would refuse, people write it
    ],
)
def test_gpu_template_run_args_become_resources(tmp_path: Path, run_args: list[str]) -> None:
    data, warnings = imported(
        tmp_path, {"image": "mcr.microsoft.com/devcontainers/python:1-3.11-bullseye", "runArgs": run_args}
    )
    assert data["resources"] == {"gpu": 1, "shm": "16Gi"}
    assert Spec.model_validate(data).resources.shm == 16 * GIB
    assert said(warnings, "--gpus", "imported as resources.gpu: 1", "set how many")


@pytest.mark.parametrize(
    ("flag", "gpu", "warned"),
    [
        ("--gpus=2", 2, False),
        ("--gpus=count=4", 4, False),
        ('--gpus="device=0,2"', 2, True),
        ("--gpus=device=1", 1, True),
    ],
)
def test_gpu_counts_and_device_ids(tmp_path: Path, flag: str, gpu: int, warned: bool) -> None:
    data, warnings = imported(tmp_path, {"runArgs": [flag]})
    assert data["resources"] == {"gpu": gpu}
    assert Spec.model_validate(data).resources.gpu == GpuRequest(count=gpu)
    assert said(warnings, "device ids are one host's") == warned


def test_cpus_memory_and_ulimits(tmp_path: Path) -> None:
    run_args = [
        "--cpus=6.5",
        "-m",
        "24g",
        "--ulimit",
        "memlock=-1:-1",
        "--ulimit=stack=67108864",
        "--ulimit",
        "nofile=1024:65536",
        "--ulimit",
        "rtprio=99",
    ]
    data, warnings = imported(tmp_path, {"runArgs": run_args})
    assert data["resources"] == {
        "cpu": 6.5,
        "memory": "24Gi",
        "ulimits": {"memlock": -1, "stack": 67108864, "nofile": 65536},
    }
    assert said(warnings, "nofile=1024:65536", "the hard limit")
    assert said(warnings, "rtprio=99", "not imported", "memlock")


def test_memory_long_form(tmp_path: Path) -> None:
    data, _ = imported(tmp_path, {"runArgs": ["--memory=512m", "--cpus", "2"]})
    assert data["resources"] == {"memory": "512Mi", "cpu": 2}


@pytest.mark.parametrize(
    ("run_args", "shm", "kept_shm_size"),
    [
        (["--ipc=host"], "16Gi", False),
        (["--ipc", "host", "--memory", "64g"], "32Gi", False),
        (["--ipc=host", "--shm-size=8g"], "8Gi", True),
    ],
)
def test_ipc_host_is_refused_but_its_shm_is_kept(
    tmp_path: Path, run_args: list[str], shm: str, kept_shm_size: bool
) -> None:
    data, warnings = imported(tmp_path, {"runArgs": run_args})
    assert data["resources"]["shm"] == shm
    assert said(warnings, "--ipc=host refused", "host's IPC namespace")
    assert said(warnings, "keeps the size given by --shm-size") == kept_shm_size


@pytest.mark.parametrize(
    ("run_args", "shown", "reason"),
    [
        (["--privileged"], "runArgs --privileged refused", "every host device"),
        (["--cap-add", "SYS_ADMIN"], "runArgs --cap-add SYS_ADMIN refused", "capabilities"),
        (["--cap-add=SYS_PTRACE"], "runArgs --cap-add=SYS_PTRACE refused", "capabilities"),
        (["--network=host"], "runArgs --network=host refused", "own network"),
        (["--net", "host"], "runArgs --net host refused", "own network"),
        (["--device", "/dev/fuse"], "runArgs --device /dev/fuse refused", "host devices"),
        (["-v", "/data:/data"], "runArgs -v /data:/data refused", "allowed_host_folders"),
        (["--volume=/mnt:/mnt:ro"], "runArgs --volume=/mnt:/mnt:ro refused", "host paths"),
        (
            ["--mount", "type=bind,source=/x,target=/x"],
            "runArgs --mount type=bind,source=/x,target=/x refused",
            "host paths",
        ),
        (["--pid=host"], "runArgs --pid=host refused", "host processes"),
        (["--security-opt", "seccomp=unconfined"], "runArgs --security-opt seccomp=unconfined refused", "seccomp"),
        (["--env-file", ".env"], "runArgs --env-file .env refused", "developer's host"),
        (["--init"], "runArgs --init not imported", "tini"),
        (["-it"], "runArgs -it not imported", "devenv ssh"),
        (["--name", "dev"], "runArgs --name dev not imported", "names the container"),
        (["--foo"], "runArgs --foo not imported", "no such setting"),
    ],
)
def test_flags_that_break_isolation_or_devenv_sets_are_named_with_the_reason(
    tmp_path: Path, run_args: list[str], shown: str, reason: str
) -> None:
    data, warnings = imported(tmp_path, {"runArgs": run_args})
    assert "resources" not in data and "env" not in data
    assert said(warnings, shown, reason), warnings


def test_env_and_publish_flags(tmp_path: Path) -> None:
    run_args = [
        "-e",
        "A=1",
        "--env=B=two words",
        "-e NVIDIA_DISABLE_REQUIRE=true",
        "-eC=3",
        "-e",
        "HOME",
        "-p",
        "8080:8080",
        "--publish=127.0.0.1:9000:5000/tcp",
    ]
    data, warnings = imported(tmp_path, {"runArgs": run_args})
    assert data["env"] == {"A": "1", "B": "two words", "NVIDIA_DISABLE_REQUIRE": "true", "C": "3"}
    assert data["ports"] == [8080, 5000]
    assert said(warnings, "-e HOME", "developer's host environment")
    assert said(warnings, "port 5000 is published on the same port number")


def test_run_args_must_be_a_list(tmp_path: Path) -> None:
    data, warnings = imported(tmp_path, {"runArgs": "--gpus all"})
    assert "resources" not in data
    assert warnings == ["runArgs not imported: expected a list of docker run arguments"]


def test_docker_sizes_are_binary_like_docker_reads_them() -> None:
    assert [docker_size(s) for s in ("16gb", "16G", "512m", "1.5g", "2t", "1024", "lots")] == [
        "16Gi",
        "16Gi",
        "512Mi",
        "1536Mi",
        "2Ti",
        "1Ki",
        None,
    ]


# ---- hostRequirements ----


def test_host_requirements_and_run_args_agree_on_the_container_limit(tmp_path: Path) -> None:
    config = {
        "runArgs": ["--memory=16g", "--gpus=2"],
        "hostRequirements": {"cpus": 8, "memory": "32gb", "storage": "100gb", "gpu": True},
    }
    data, warnings = imported(tmp_path, config)
    assert data["resources"] == {"memory": "16Gi", "gpu": 2, "cpu": 8, "disk": "100gb"}
    assert said(warnings, "hostRequirements.memory", "'32gb' not imported", "container's own settings")


def test_optional_gpu_is_not_asked(tmp_path: Path) -> None:
    data, warnings = imported(tmp_path, {"hostRequirements": {"gpu": "optional"}})
    assert "resources" not in data
    assert said(warnings, 'hostRequirements.gpu "optional" not imported', "resources.gpu: 1")


# ---- lifecycle commands ----


def test_lifecycle_commands_run_in_the_running_workspace(tmp_path: Path) -> None:
    config = {
        "postAttachCommand": "git status",
        "postStartCommand": ["nvidia-smi", "-L"],
        "postCreateCommand": "pip install -r requirements.txt; echo done",
        "updateContentCommand": {"deps": "pip install -e .", "hooks": ["pre-commit", "install"]},
        "onCreateCommand": "bash .devcontainer/install-dev-tools.sh",
        "initializeCommand": "docker pull x",
    }
    data, warnings = imported(tmp_path, config)
    assert "setup" not in data
    assert data["hooks"] == {
        "create": [
            "bash .devcontainer/install-dev-tools.sh",
            {"deps": "pip install -e .", "hooks": "pre-commit install"},
            "pip install -r requirements.txt; echo done",
        ],
        "start": ["nvidia-smi -L", {"background": "git status"}],  # never waited for, as in Dev Containers
    }
    assert said(warnings, "postAttachCommand -> hooks.start `background` steps", "never wait")
    assert said(warnings, "'initializeCommand' not imported", "developer's host")
    assert said(warnings, "updateContentCommand -> hooks.create")


def test_a_server_in_post_attach_runs_detached_and_the_spec_takes_it(tmp_path: Path) -> None:
    """Streamlit's Codespaces template: waiting for `streamlit run` would hold `devenv up` for ever."""
    config = {
        "postAttachCommand": {
            "server": "streamlit run app.py --server.enableCORS false",
            "background": "tail -f /dev/null",
        }
    }
    data, _ = imported(tmp_path, config)
    assert data["hooks"]["start"] == [
        {"background": "streamlit run app.py --server.enableCORS false"},
        {"background": "tail -f /dev/null"},
    ]
    grouped, warnings = imported(tmp_path, {"postStartCommand": {"background": "echo a", "b": "echo b"}})
    assert grouped["hooks"]["start"] == [{"background-2": "echo a", "b": "echo b"}]  # a group, not a detached step
    assert said(warnings, "postStartCommand.background: renamed 'background-2'")


def test_workspace_variables_in_commands(tmp_path: Path) -> None:
    config = {
        "postCreateCommand": "pip install -e ${containerWorkspaceFolder}",
        "postStartCommand": "echo ${containerEnv:HOME} ${localEnv:USER}",
        "onCreateCommand": {"a b": "make", "": 5},
    }
    data, warnings = imported(tmp_path, config)
    assert data["hooks"] == {"create": [{"a-b": "make"}, "pip install -e $PWD"]}
    assert said(warnings, "postStartCommand", "not imported", "${localEnv:USER}")
    assert said(warnings, "renamed 'a-b'")
    assert said(warnings, "onCreateCommand.", "not imported: expected a non-empty string")


# ---- images and Dockerfiles ----


@pytest.mark.parametrize(
    ("image", "base", "python", "warning"),
    [
        ("nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04", "cuda", "3.12", "CUDA 12.4 code runs on the base's CUDA 12.6"),
        ("docker.io/nvidia/cuda:12.8.0-runtime-ubuntu24.04", "cuda", "3.12", "CUDA 12.8 cannot be met"),
        ("nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04", "cuda", "3.12", "CUDA 11.8 is not the cuda base's"),
        ("pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime", "cuda", "3.12", "put torch==2.3.0 in requirements.in"),
        ("nvcr.io/nvidia/pytorch:24.05-py3", "cuda", "3.12", "put torch in requirements.in"),
        ("nvcr.io/nvidia/tritonserver:24.05-py3", "cuda", "3.12", "tags do not say their CUDA version"),
        ("mcr.microsoft.com/devcontainers/python:1-3.11-bullseye", None, "3.11", "it asks for Python 3.11"),
        ("python:3.11-slim", None, "3.11", "it asks for Python 3.11"),
        ("python:3.10-slim", None, "3.11", "Python 3.10 cannot be met: the cpu base provides Python 3.11 only"),
        ("mcr.microsoft.com/devcontainers/base:jammy", None, None, "the cpu base (Debian, Python 3.11) is used"),
        ("continuumio/miniconda3:latest", None, None, "not conda"),
    ],
)
def test_image_becomes_a_base_and_python(
    tmp_path: Path, image: str, base: str | None, python: str | None, warning: str
) -> None:
    data, warnings = imported(tmp_path, {"image": image})
    assert data.get("base") == base
    assert data.get("python") == python
    assert said(warnings, image, warning) or said(warnings, warning), warnings


def test_cuda_base_facts_come_from_the_recipes() -> None:
    assert base_python("cpu") == load_recipe("cpu").python
    assert base_python("cuda") == load_recipe("cuda").python
    assert cuda_base_version() == (12, 6) and "nvidia/cuda:12.6" in load_recipe("cuda").upstream


CUDA_DOCKERFILE = """\
ARG CUDA=11.8.0
FROM nvidia/cuda:${CUDA}-cudnn8-devel-ubuntu22.04 AS base
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1
ENV PATH=/opt/x/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends \\
        graphviz libgl1=1.4.0-1 git \\
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir torch==2.3.0 numpy -r /tmp/requirements.txt
RUN mkdir -p /opt/tools && echo ok > /opt/tools/version
RUN git clone https://github.com/NVIDIA/apex /opt/apex && cd /opt/apex && pip install .
RUN conda install -y faiss-gpu
EXPOSE 6006
FROM base AS dev
USER vscode
COPY . /workspace
"""


def test_dockerfile_lines_go_where_they_can_run(tmp_path: Path) -> None:
    config = {"build": {"dockerfile": "Dockerfile", "args": {"CUDA": "12.2.2"}}}
    data, warnings = imported(tmp_path, config, CUDA_DOCKERFILE)
    assert data["base"] == "cuda" and data["python"] == "3.12"
    assert data["apt"] == ["graphviz", "libgl1", "git"]
    assert data["setup"] == ["mkdir -p /opt/tools && echo ok > /opt/tools/version"]
    assert data["hooks"] == {
        "create": ["git clone https://github.com/NVIDIA/apex /opt/apex && cd /opt/apex && pip install ."]
    }
    assert data["env"] == {"DEBIAN_FRONTEND": "noninteractive", "PYTHONUNBUFFERED": "1"}
    assert data["ports"] == [6006]
    assert said(warnings, "CUDA 12.2 code runs")  # build.args wins over the ARG default
    assert said(warnings, "put torch==2.3.0, numpy in requirements.in", "add /tmp/requirements.txt to requirements:")
    assert said(warnings, "-> hooks.create: it needs the network")
    assert said(warnings, "-> setup: (runs at image build time", "no network")
    assert said(warnings, "conda install -y faiss-gpu", "not conda")
    assert said(warnings, "ENV PATH not imported")
    assert said(warnings, "USER, COPY not imported")


def test_network_step_after_pip_in_a_run_line_is_not_setup(tmp_path: Path) -> None:
    dockerfile = "FROM python:3.11\nRUN curl -fsSL https://x.example/install.sh | sh; echo done\n"
    data, _ = imported(tmp_path, {"build": {"dockerfile": "Dockerfile"}}, dockerfile)
    assert data["hooks"]["create"] == ["curl -fsSL https://x.example/install.sh | sh; echo done"]
    assert "setup" not in data


# ---- features ----


@pytest.mark.parametrize(
    ("feature", "options", "expect", "warning"),
    [
        ("ghcr.io/devcontainers/features/python:1", {"version": "3.11"}, {"python": "3.11"}, None),
        ("ghcr.io/devcontainers/features/python:1", {"version": "3.8"}, {"python": "3.11"}, "3.8 cannot be met"),
        ("ghcr.io/devcontainers/features/git:1", {"ppa": True, "version": "latest"}, {"apt": ["git"]}, "apt: git"),
        ("ghcr.io/devcontainers/features/git", {}, {"apt": ["git"]}, "apt: git"),
        ("git", {}, {"apt": ["git"]}, "apt: git"),
        ("ghcr.io/devcontainers/features/common-utils:2", {}, {}, "nothing to import"),
        (
            "ghcr.io/devcontainers/features/nvidia-cuda:1",
            {"cudaVersion": "11.8", "installCudnn": True},
            {"base": "cuda", "python": "3.12"},
            "CUDA 11.8 is not the cuda base's",
        ),
        (
            "ghcr.io/devcontainers/features/nvidia-cuda:1",
            {"installToolkit": True},
            {"base": "cuda", "python": "3.12"},
            "installToolkit not imported",
        ),
        ("ghcr.io/devcontainers/features/node:1", {"version": "18"}, {"apt": ["nodejs", "npm"]}, "version '18' not"),
        ("ghcr.io/devcontainers/features/conda:1", {}, {}, "not conda"),
        (
            "ghcr.io/devcontainers/features/docker-in-docker:2",
            {},
            {},
            "refused: it gives the workspace a Docker engine",
        ),
        ("ghcr.io/devcontainers/features/docker-outside-of-docker:1", {}, {}, "root on the host"),
        ("ghcr.io/devcontainers/features/github-cli:1", {}, {"apt": ["gh"]}, "apt: gh"),
        ("ghcr.io/devcontainers-contrib/features/ffmpeg-apt-get:1", {}, {"apt": ["ffmpeg"]}, "apt: ffmpeg"),
        ("ghcr.io/devcontainers/features/java:1", {}, {}, "not imported: devenv does not run Dev Container Features"),
    ],
)
def test_common_features(
    tmp_path: Path, feature: str, options: dict[str, Any], expect: dict[str, Any], warning: str | None
) -> None:
    data, warnings = imported(tmp_path, {"features": {feature: options}})
    assert {key: data[key] for key in ("base", "python", "apt") if key in data} == expect
    if warning is not None:
        assert said(warnings, f"feature '{feature}'", warning), warnings


# ---- mounts, ports, env ----


def test_mounts(tmp_path: Path) -> None:
    config = {
        "workspaceMount": "source=${localWorkspaceFolder},target=/workspace,type=bind,consistency=cached",
        "workspaceFolder": "/workspace",
        "mounts": [
            "source=/data/EPIC-KITCHENS,target=/data,type=bind",
            {"source": "pip-cache", "target": "/root/.cache/pip", "type": "volume"},
            "type=tmpfs,target=/scratch",
        ],
    }
    data, warnings = imported(tmp_path, config)
    assert set(data) == {"name"}
    assert said(warnings, "workspaceMount", "the project folder is handled")
    assert said(warnings, "'workspaceFolder' not imported", "workspace home")
    assert said(warnings, "/data/EPIC-KITCHENS", "refused", "allowed_host_folders")
    assert said(warnings, "pip-cache", "refused", "home volume")
    assert said(warnings, "/scratch", "no tmpfs mounts")


def test_ports_and_their_labels(tmp_path: Path) -> None:
    config = {
        "forwardPorts": [6006, "localhost:8000", 8888],
        "appPort": [3000, "8080:80"],
        "portsAttributes": {
            "6006": {"label": "TensorBoard", "onAutoForward": "notify"},
            "8000": {"label": "API"},
            "9999": {"label": "Unused"},
        },
    }
    data, warnings = imported(tmp_path, config)
    assert data["ports"] == [6006, 8000, 3000, 80]
    assert said(warnings, "ports 6006 (TensorBoard), 8000 (API) are under ports:")
    assert said(warnings, "port 8888 not imported", "JupyterLab")
    assert said(warnings, "portsAttributes.9999 not imported")
    assert said(warnings, "6006.onAutoForward")


def test_container_and_remote_env(tmp_path: Path) -> None:
    config = {
        "containerEnv": {"HF_HOME": "/home/dev/.cache/hf", "TOKEN": "${localEnv:HF_TOKEN}"},
        "remoteEnv": {"PATH": "${containerEnv:PATH}:/usr/local/cuda/bin"},
    }
    data, warnings = imported(tmp_path, config)
    assert data["env"] == {"HF_HOME": "/home/dev/.cache/hf"}
    assert said(warnings, "containerEnv.TOKEN not imported") and said(warnings, "remoteEnv.PATH not imported")


# ---- the whole of a real-world GPU devcontainer ----

GPU_DEVCONTAINER = """\
// For format details, see https://aka.ms/devcontainer.json.
{
    "name": "CUDA 12 Lab",
    "image": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    "runArgs": ["--gpus", "all", "--shm-size", "16gb", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864",
                "--cap-add=SYS_PTRACE", "--security-opt", "seccomp=unconfined"],
    "hostRequirements": {"gpu": true, "cpus": 8},
    "features": {
        "ghcr.io/devcontainers/features/common-utils:2": {"installZsh": true},
        "ghcr.io/devcontainers/features/git:1": {},
        "ghcr.io/devcontainers/features/docker-in-docker:2": {},
    },
    "forwardPorts": [6006],
    "portsAttributes": {"6006": {"label": "TensorBoard"}},
    "containerEnv": {"HF_HOME": "/home/dev/.cache/huggingface"},
    "mounts": ["source=${localWorkspaceFolder}/data,target=/data,type=bind"],
    "onCreateCommand": "pip install -U pip",
    "postCreateCommand": "pip install -r requirements.txt; echo done",
    "postStartCommand": "nvidia-smi",
    "customizations": {"vscode": {"extensions": ["ms-python.python"]}},
    "remoteUser": "vscode",
}
"""


def test_real_world_gpu_devcontainer(tmp_path: Path) -> None:
    data, warnings = imported(tmp_path, GPU_DEVCONTAINER)
    assert data == {
        "name": "cuda-12-lab",
        "base": "cuda",
        "python": "3.12",
        "apt": ["git"],
        "hooks": {
            "create": ["pip install -U pip", "pip install -r requirements.txt; echo done"],
            "start": ["nvidia-smi"],
        },
        "resources": {"gpu": 1, "shm": "16Gi", "ulimits": {"memlock": -1, "stack": 67108864}, "cpu": 8},
        "ports": [6006],
        "env": {"HF_HOME": "/home/dev/.cache/huggingface"},
    }
    spec = Spec.model_validate(data)
    assert spec.resources.shm == 16 * GIB and spec.resources.ulimits == {"memlock": -1, "stack": 67108864}
    config = json.loads(strip_jsonc(GPU_DEVCONTAINER))
    carried = {
        "name",
        "image",
        "runArgs",
        "hostRequirements",
        "forwardPorts",
        "containerEnv",
        "onCreateCommand",
        "postCreateCommand",
        "postStartCommand",
    }
    for key in set(config) - carried:  # nothing dropped silently: every other key is named in a warning
        assert said(warnings, key), key
    for flag in ("--cap-add=SYS_PTRACE", "--security-opt seccomp=unconfined"):
        assert said(warnings, flag, "refused")


def test_top_level_isolation_keys_are_refused(tmp_path: Path) -> None:
    config = {
        "privileged": True,
        "capAdd": ["SYS_PTRACE"],
        "securityOpt": [],
        "init": True,
        "dockerComposeFile": "compose.yml",
        "someFutureKey": 1,
    }
    data, warnings = imported(tmp_path, config)
    assert set(data) == {"name"}
    assert said(warnings, "'privileged' refused", "every host device")
    assert said(warnings, "'capAdd' refused", "capabilities")
    assert not said(warnings, "securityOpt")  # an empty list asks for nothing
    assert said(warnings, "'init' not imported", "tini")
    assert said(warnings, "'dockerComposeFile' not imported", "one container per workspace")
    assert said(warnings, "'someFutureKey' not imported")


def test_apt_python_packages_are_left_to_the_base(tmp_path: Path) -> None:
    dockerfile = "FROM ubuntu:22.04\nRUN apt-get install -y python3.10 python3-pip python-yaml python3-dev vim\n"
    data, warnings = imported(tmp_path, {"build": {"dockerfile": "Dockerfile"}, "settings": {}}, dockerfile)
    assert data["apt"] == ["python3-dev", "vim"]
    for package in ("python3.10", "python3-pip", "python-yaml"):
        assert said(warnings, f"apt package {package} not imported", "the base provides Python")
    assert said(warnings, "'settings' not imported", "editor")


def test_host_folder_variables_in_commands(tmp_path: Path) -> None:
    config = {
        "postCreateCommand": "bash -lc 'chmod +x /workspaces/${localWorkspaceFolderBasename}/dev.sh'",
        "postStartCommand": "ls ${localWorkspaceFolder}/data",
    }
    data, warnings = imported(tmp_path, config)
    assert data["hooks"] == {"create": ["bash -lc 'chmod +x $PWD/dev.sh'"]}
    assert said(warnings, "postStartCommand", "not imported", "developer's host (${localWorkspaceFolder})")
    assert not said(warnings, "postStartCommand not imported: expected")  # one warning, not two


def test_dockerfile_args_and_user_setup(tmp_path: Path) -> None:
    dockerfile = (
        "FROM mcr.microsoft.com/devcontainers/base:ubuntu\nARG USERNAME=vscode\nARG TOOLS=/opt/tools\n"
        "RUN groupadd --gid 1000 $USERNAME && useradd -m $USERNAME\n"
        'RUN echo "$USERNAME ALL=(root) NOPASSWD:ALL" > /etc/sudoers.d/$USERNAME\n'
        "RUN mkdir -p ${TOOLS}\n"
    )
    data, warnings = imported(
        tmp_path, {"build": {"dockerfile": "Dockerfile", "args": {"TOOLS": "/srv/t"}}}, dockerfile
    )
    assert data["setup"] == ["mkdir -p /srv/t"]
    assert said(warnings, "groupadd --gid 1000 vscode", "not imported: it sets up users")
    assert said(warnings, "/etc/sudoers.d/vscode", "not imported: it sets up users")
    assert not said(warnings, "ARG")


def test_the_last_of_two_equal_flags_wins_as_in_docker(tmp_path: Path) -> None:
    data, warnings = imported(tmp_path, {"runArgs": ["--shm-size=1g", "--shm-size=8g"]})
    assert data["resources"] == {"shm": "8Gi"}
    assert said(warnings, "--shm-size=8g", "replaces '1Gi'")
