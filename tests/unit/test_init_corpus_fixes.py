"""`devenv init` on what the corpus of real ML repositories showed it got wrong (tests/corpus).

Each test reads the real corpus folder where it shows the case, and a small folder for the edges: the workspace
name, OpenCV's Debian libraries, a Dockerfile's `conda install`, a devcontainer's build context, the user
vscode, Ubuntu's apt names, and RUN lines that use what COPY/ADD brought.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devenv.requirements import requirement_problems
from devenv.spec.bookworm import bookworm_name
from devenv.spec.devcontainer import import_devcontainer
from devenv.spec.devcontainer_commands import adapt, copied_paths
from devenv.spec.discover import Discovery, discover
from devenv.spec.discover_debian import requirement_name
from devenv.spec.discover_python import GENERATED

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def entry(name: str, into: Path) -> Path:
    target = into / name
    shutil.copytree(CORPUS / name, target, ignore=shutil.ignore_patterns("SOURCE.yaml", ".ruff_cache"))
    return target


def project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def texts(found: Discovery) -> str:
    return "\n".join(note.render() for note in found.notes)


def lines(found: Discovery) -> list[str]:
    return [
        line for line in found.files.get("requirements.devenv.in", "").splitlines() if line and not line.startswith("#")
    ]


# 1. the workspace name


@pytest.mark.parametrize("name", ["DataMakeSense__penguin_ml", "DataScienceCoach__EmotionsClassifier"])
def test_the_folder_names_the_workspace_not_the_devcontainer(name: str, tmp_path: Path) -> None:
    root = entry(name, tmp_path)
    assert discover(root, repo=False).data["name"] == name.lower().replace("__", "-").replace("_", "-")
    assert discover(root, name="mine", repo=False).data["name"] == "mine"
    data, _ = import_devcontainer(root / ".devcontainer/devcontainer.json")  # `devenv init --from` keeps it
    assert data["name"] == "python-3"


# 2. OpenCV's libraries


@pytest.mark.parametrize("name", ["Atcold__NYU-DLSP20", "ultralytics__yolov5"])
def test_opencv_brings_its_debian_libraries(name: str, tmp_path: Path) -> None:
    found = discover(entry(name, tmp_path), repo=False)
    assert {"libgl1", "libglib2.0-0"} <= set(found.data["apt"])
    assert "added for opencv-python" in texts(found) and "libxcb" in texts(found)


@pytest.mark.parametrize(
    ("requirements", "added"),
    [
        ("opencv-python-headless\n", False),
        ("opencv-contrib-python==4.9.0.80\n", True),
        ("ultralytics>=8\n", True),
        ("opencv_python\n", True),
        ("numpy\n", False),
    ],
)
def test_opencv_rule(tmp_path: Path, requirements: str, added: bool) -> None:
    found = discover(project(tmp_path, {"requirements.txt": requirements}), repo=False)
    assert ("libgl1" in found.data.get("apt", [])) is added
    assert ("libglib2.0-0" in found.data.get("apt", [])) is added


@pytest.mark.parametrize(("requirements", "added"), [("GitPython==3.1.27\n", True), ("gitdb\n", False)])
def test_gitpython_brings_git(tmp_path: Path, requirements: str, added: bool) -> None:
    """GitPython runs the git program: `import git` fails in an image without it (35shravanmalviya's freeze)."""
    found = discover(project(tmp_path, {"requirements.txt": requirements}), repo=False)
    assert ("git" in found.data.get("apt", [])) is added
    assert ("added for gitpython" in texts(found)) is added


@pytest.mark.parametrize(
    "option", ["-f https://download.pytorch.org/whl/torch_stable.html", "--extra-index-url=https://example.org/simple"]
)
def test_a_trailing_index_option_gets_a_line_of_its_own(tmp_path: Path, option: str) -> None:
    """pip takes `torch==1.8.0+cu101 -f URL` (DataLama's first line); uv stops on it: init splits it."""
    root = project(tmp_path, {"requirements.txt": f"torch==1.8.0+cu101 {option}\nnumpy\n"})
    found = discover(root, repo=False)
    generated = found.files[GENERATED]
    flag, _, url = option.replace("=", " ", 1).partition(" ")
    assert f"{flag} {url}\n" in generated and "torch==1.8.0+cu101\n" in generated and "numpy\n" in generated
    assert requirement_problems(root, []) == [] and "split in two" in texts(found)
    (root / GENERATED).write_text(generated)
    assert requirement_problems(root, [GENERATED]) == []  # what the lock reads is clean


def test_requirement_name() -> None:
    assert requirement_name("OpenCV.Python>=4 ; python_version>'3'") == "opencv-python"
    assert requirement_name("-r other.txt") is None and requirement_name("# opencv-python") is None


# 3. a Dockerfile's conda install


def test_dockerfile_conda_install_goes_through_the_table(tmp_path: Path) -> None:
    found = discover(entry("brian-dawn__pytorch-devcontainer-template", tmp_path), repo=False)
    assert lines(found) == ["ipykernel", "matplotlib", "black", "tensorboard"]
    notes = texts(found)
    assert "conda package gxx_linux-64 (no known PyPI/apt equivalent" in notes
    assert "conda package pyright (no known" in notes
    assert "other RUN command" not in notes


def test_conda_install_options_apt_and_cuda(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "Dockerfile": "FROM debian\nRUN mamba install -y -n base -c conda-forge "
            "pytorch=2.3 git cudatoolkit && conda clean -a\n"
        },
    )
    found = discover(root, repo=False)
    assert lines(found) == ["torch==2.3.*"] and found.data["apt"] == ["git"] and found.data["base"] == "cuda"
    assert "1 conda package as PyPI packages and 1 as Debian packages (conda install)" in texts(found)


# 4. a devcontainer's build context


def test_devcontainer_folder_requirements_without_a_dockerfile(tmp_path: Path) -> None:
    found = discover(entry("alankrantas__tensorflow-cuda-gpu-devcontainer", tmp_path), repo=False)
    assert found.data["requirements"] == [".devcontainer/requirements.txt"]
    assert "has no Dockerfile: its commands install the requirements.txt beside it" in texts(found)


def test_dockerfile_requirements_are_read_in_the_build_context(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".devcontainer/devcontainer.json": '{"build": {"dockerfile": "Dockerfile"}}',
            ".devcontainer/Dockerfile": "FROM python:3.11\nCOPY requirements.txt /tmp/\n"
            "RUN pip install -r /tmp/requirements.txt && rm -r /tmp/x\n",
            ".devcontainer/requirements.txt": "numpy\n",
        },
    )
    found = discover(root, repo=False)
    assert found.data["requirements"] == [".devcontainer/requirements.txt"]
    assert ".devcontainer/Dockerfile installs it from its build context .devcontainer/" in texts(found)


def test_build_context_above_the_devcontainer_folder(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".devcontainer/devcontainer.json": '{"build": {"dockerfile": "Dockerfile", "context": ".."}}',
            ".devcontainer/Dockerfile": "FROM python:3.11\nCOPY ci/dev-requirements.txt /tmp/dev-requirements.txt\n"
            "RUN pip install -r /tmp/dev-requirements.txt\n",
            ".devcontainer/dev-requirements.txt": "pandas\n",  # not the one: the context is the project
            "ci/dev-requirements.txt": "numpy\n",
        },
    )
    assert discover(root, repo=False).data["requirements"] == ["ci/dev-requirements.txt"]


# 5. the user vscode


def test_vscode_becomes_dev(tmp_path: Path) -> None:
    found = discover(entry("Timothy-Coulter__pytorch-devcontainer-cuda-12.8", tmp_path), repo=False)
    assert any("chown -R dev:dev /home/dev/.cache" in line for line in found.data["setup"])
    assert found.data["env"]["HF_HOME"] == "/home/dev/.cache/huggingface"
    spec = {key: found.data[key] for key in ("setup", "hooks", "env")}
    assert "vscode" not in str(spec)
    assert "the Dev Containers user vscode became dev" in texts(found)


def test_vscode_rewrite_leaves_other_words() -> None:
    data = {
        "setup": ["sudo -u vscode x && cp .vscode/a ~/.vscode-server/b", "echo ms-vscode.python"],
        "hooks": {"start": [{"a": 'chown "vscode" /home/vscode'}]},
    }
    warnings: list[str] = []
    adapt(data, warnings)
    assert data["setup"] == ["sudo -u dev x && cp .vscode/a ~/.vscode-server/b", "echo ms-vscode.python"]
    assert data["hooks"] == {"start": [{"a": 'chown "dev" /home/dev'}]}
    assert len(warnings) == 1 and warnings[0].startswith("setup, hooks.start:")


# 6. Ubuntu's apt names


def test_ubuntu_apt_names_become_bookworms(tmp_path: Path) -> None:
    found = discover(entry("DataLama__nlp-remote-gpu", tmp_path), repo=False)
    apt = found.data["apt"]
    assert {"locales", "default-jdk-headless", "libhdf5-dev"} <= set(apt)
    assert not {"language-pack-ko", "openjdk-8-jdk", "libhdf5-serial-dev"} & set(apt)
    assert "apt openjdk-8-jdk imported as default-jdk-headless" in texts(found)


def test_apt_txt_names_are_renamed_too(tmp_path: Path) -> None:
    found = discover(project(tmp_path, {"apt.txt": "libgl1-mesa-glx\npython-dev\nlibfoo-nonexistent\n"}), repo=False)
    assert found.data["apt"] == ["libfoo-nonexistent", "libgl1", "python3-dev"]  # unknown names stay
    assert "apt.txt: apt libgl1-mesa-glx taken as libgl1 (libgl1-mesa-glx is not in Debian bookworm" in texts(found)
    assert bookworm_name("language-pack-en-base")[0] == "locales" and bookworm_name("git") == ("git", None)


# 7. RUN lines that use what COPY/ADD brought


def test_run_lines_on_copied_paths_are_not_imported(tmp_path: Path) -> None:
    found = discover(entry("tudelft__AE4353-Y24", tmp_path), repo=False)
    assert "setup" not in found.data
    notes = texts(found)
    assert "RUN 'chmod =2775 /opt/conda' not imported: it uses /opt/conda, which `COPY" in notes
    assert "RUN 'chmod =2775 /opt/conda' -> setup:" not in notes


def test_copied_path_rule(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".devcontainer/devcontainer.json": '{"build": {"dockerfile": "Dockerfile"}}',
            ".devcontainer/Dockerfile": "FROM debian AS tool\nFROM debian\nCOPY --from=tool /opt/tool /opt/tool\n"
            "COPY a.sh ./\nRUN chmod +x /opt/tool/bin/a\nRUN ls /opt/toolbox\nRUN echo hi\n",
        },
    )
    data, warnings = import_devcontainer(root)
    assert data["setup"] == ["ls /opt/toolbox", "echo hi"]
    assert any("'chmod +x /opt/tool/bin/a' not imported: it uses /opt/tool" in w for w in warnings)
    # "/" would name every path; a destination in a variable is not known
    assert set(copied_paths("COPY a /\nADD --chown=x b \\\n  /srv/b/\nCOPY $X /x\nCOPY y $DEST\n")) == {"/srv/b", "/x"}


def test_setup_steps_get_the_env_values_they_expand(tmp_path: Path) -> None:
    """A Dockerfile's ENV reached its RUN lines; devenv's env: reaches only the running workspace, so an imported
    build step that expands one gets it set in front (Timothy-Coulter's `mkdir -p "$PIP_CACHE_DIR" ...`)."""
    found = discover(entry("Timothy-Coulter__pytorch-devcontainer-cuda-12.8", tmp_path), repo=False)
    [step] = [s for s in found.data["setup"] if "PIP_CACHE_DIR" in s]
    assert step.startswith("export ") and "PIP_CACHE_DIR=/home/dev/.cache/pip" in step.split(" && ")[0]
    assert "NVIDIA_VISIBLE_DEVICES" not in step  # only what the step expands
    completed = subprocess.run(
        ["sh", "-c", step.replace("chown -R dev:dev", "true").replace("/home/dev", str(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
