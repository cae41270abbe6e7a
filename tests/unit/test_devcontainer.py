"""devcontainer.json import: JSONC parsing, what maps to the spec, and a warning for what does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from devenv.errors import SpecInvalid
from devenv.spec import SPEC_FILENAME, GpuRequest, Spec, import_devcontainer, load_spec
from devenv.spec.devcontainer import strip_jsonc

REALISTIC = """\
// For format details, see https://aka.ms/devcontainer.json.
{
    "name": "Vision Lab (PyTorch)",
    /* the base image; devenv pins its own */
    "image": "mcr.microsoft.com/devcontainers/python:3.11",
    "features": {
        "ghcr.io/devcontainers/features/node:1": {"version": "lts"},
        "ghcr.io/devcontainers/features/nvidia-cuda:1": {},
    },
    // Ports the app and TensorBoard use
    "forwardPorts": [8080, "localhost:6006", "not-a-port", 8080],
    "containerEnv": {
        "PYTHONUNBUFFERED": "1",
        "API_URL": "http://example.com/api", // a URL with // inside a string is kept
        "GLOB": "src/*.py /* not a comment */",
    },
    "remoteEnv": {
        "PATH": "${containerEnv:PATH}:/home/vscode/.local/bin",
        "LOG_LEVEL": "debug",
    },
    "postCreateCommand": "pip install -e . && pre-commit install",
    "hostRequirements": {"cpus": 8, "memory": "32gb", "storage": "64gb", "gpu": true},
    "customizations": {"vscode": {"extensions": ["ms-python.python",]}},
    "remoteUser": "vscode",
}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder named like a real one, with requirements.in so a written spec loads."""
    root = tmp_path / "Vision_Project"
    (root / ".devcontainer").mkdir(parents=True)
    (root / "requirements.in").write_text("torch\n")
    return root


def write(project: Path, text: str, name: str = "devcontainer.json") -> Path:
    path = project / ".devcontainer" / name
    path.write_text(text)
    return path


def test_realistic_jsonc_import(project: Path) -> None:
    data, warnings = import_devcontainer(write(project, REALISTIC))
    assert data["name"] == "vision-lab-pytorch"
    assert data["base"] == "cuda"  # the nvidia-cuda feature
    assert data["python"] == "3.12"  # the cuda base's only Python: 3.11 from the image cannot be met
    assert data["apt"] == ["nodejs", "npm"]
    assert data["ports"] == [8080, 6006]
    assert data["env"] == {
        "PYTHONUNBUFFERED": "1",
        "API_URL": "http://example.com/api",
        "GLOB": "src/*.py /* not a comment */",
        "LOG_LEVEL": "debug",
    }
    assert "setup" not in data
    assert data["hooks"] == {"create": ["pip install -e . && pre-commit install"]}
    assert data["resources"] == {"cpu": 8, "memory": "32gb", "disk": "64gb", "gpu": 1}
    joined = "\n".join(warnings)
    assert "image 'mcr.microsoft.com/devcontainers/python:3.11' is not used" in joined
    assert "it asks for Python 3.11" in joined
    assert "Python 3.11 cannot be met: the cuda base provides Python 3.12 only" in joined
    assert "forwardPorts: port 'not-a-port' not imported" in joined
    assert "remoteEnv.PATH not imported" in joined
    assert "'customizations' not imported: editor settings" in joined
    assert "'remoteUser' not imported: workspaces run as the user dev" in joined


def test_one_warning_per_feature(project: Path) -> None:
    _, warnings = import_devcontainer(write(project, REALISTIC))
    feature_warnings = [w for w in warnings if w.startswith("feature ")]
    assert feature_warnings == [
        "feature 'ghcr.io/devcontainers/features/node:1' -> apt: nodejs, npm",
        "feature 'ghcr.io/devcontainers/features/nvidia-cuda:1' -> base: cuda: the CUDA 12.6 runtime "
        "(no CUDA version given to check)",
    ]


def test_imported_data_validates_and_round_trips_through_yaml(project: Path) -> None:
    data, _ = import_devcontainer(write(project, REALISTIC))
    spec = Spec.model_validate(data)
    assert spec.requirements == ["requirements.in"]
    assert spec.resources.gpu == GpuRequest(count=1)
    assert spec.resources.memory == 32 * 10**9
    (project / SPEC_FILENAME).write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_spec(project / SPEC_FILENAME) == spec


@pytest.mark.parametrize(
    ("command", "create"),
    [
        ('"make deps"', ["make deps"]),
        ('["pip", "install", "-r", "requirements dev.txt"]', ["pip install -r 'requirements dev.txt'"]),
        (
            '{"deps": "make deps", "hooks": ["pre-commit", "install"]}',
            [{"deps": "make deps", "hooks": "pre-commit install"}],
        ),
    ],
)
def test_post_create_command_in_all_three_forms(project: Path, command: str, create: list[object]) -> None:
    data, _ = import_devcontainer(write(project, f'{{"postCreateCommand": {command}}}'))
    assert data["hooks"] == {"create": create}
    assert "setup" not in data
    Spec.model_validate(data)


def test_create_commands_keep_devcontainer_order(project: Path) -> None:
    text = '{"postCreateCommand": "third", "onCreateCommand": "first", "updateContentCommand": "second"}'
    data, _ = import_devcontainer(write(project, text))
    assert data["hooks"]["create"] == ["first", "second", "third"]


def test_empty_post_create_command_is_a_warning(project: Path) -> None:
    data, warnings = import_devcontainer(write(project, '{"postCreateCommand": 5}'))
    assert "hooks" not in data
    assert warnings == ["postCreateCommand not imported: expected a string, a list or an object of commands"]


def test_json_syntax_error_has_line_and_column(project: Path) -> None:
    path = write(project, '{\n  // comment\n  "name": "x",\n  "forwardPorts": [80 81]\n}\n')
    with pytest.raises(SpecInvalid) as caught:
        import_devcontainer(path)
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.column) == (str(path), 4, 23)
    assert issue.message.startswith("invalid JSON: Expecting ','")


def test_unterminated_block_comment_is_located(project: Path) -> None:
    path = write(project, '{\n  "name": "x" /* never closed\n}\n')
    with pytest.raises(SpecInvalid) as caught:
        import_devcontainer(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.column) == (2, 15)
    assert "unterminated /* comment" in issue.message


def test_top_level_must_be_an_object(project: Path) -> None:
    with pytest.raises(SpecInvalid, match="1 problem"):
        import_devcontainer(write(project, "[1, 2]"))


def test_missing_file_is_spec_invalid(tmp_path: Path) -> None:
    with pytest.raises(SpecInvalid) as caught:
        import_devcontainer(tmp_path)
    assert "no devcontainer.json" in caught.value.issues[0].message


def test_project_folder_is_searched_and_names_the_spec(project: Path) -> None:
    write(project, '{"forwardPorts": [3000]}')
    data, warnings = import_devcontainer(project)
    assert data == {"name": "vision-project", "ports": [3000]}
    assert warnings == []


def test_root_level_devcontainer_json_uses_its_folder_name(tmp_path: Path) -> None:
    (tmp_path / "my-app").mkdir()
    (tmp_path / "my-app" / ".devcontainer.json").write_text("{}")
    data, _ = import_devcontainer(tmp_path / "my-app")
    assert data["name"] == "my-app"


def test_name_argument_wins(project: Path) -> None:
    data, _ = import_devcontainer(write(project, REALISTIC), name="Custom Name")
    assert data["name"] == "custom-name"


def test_dockerfile_run_steps_are_sorted_by_where_they_can_run(project: Path) -> None:
    (project / ".devcontainer" / "Dockerfile").write_text(
        "FROM python:3.11\n"
        "# install tools\n"
        "RUN apt-get update \\\n"
        "    && apt-get install -y graphviz\n"
        "COPY . /src\n"
        "RUN --mount=type=cache,target=/root/.cache pip install -U pip\n"
        'RUN ["python", "-c", "print(1)"]\n'
        "RUN <<EOF\necho hi\nEOF\n"
    )
    data, warnings = import_devcontainer(write(project, '{"build": {"dockerfile": "Dockerfile", "args": {}}}'))
    assert data["apt"] == ["graphviz"]
    assert data["python"] == "3.11"
    assert data["setup"] == ["python -c 'print(1)'"]
    assert "hooks" not in data
    assert any("RUN 'pip install -U pip' not imported: it installs nothing" in w for w in warnings)
    assert any("a heredoc RUN step was not imported" in w for w in warnings)
    assert any("COPY not imported" in w for w in warnings)
    assert "build.args not imported: only used to read the Dockerfile's FROM and RUN lines" in warnings


def test_missing_dockerfile_is_a_warning(project: Path) -> None:
    data, warnings = import_devcontainer(write(project, '{"build": {"dockerfile": "Nope"}}'))
    assert "setup" not in data
    assert warnings == ["Dockerfile 'Nope' not found or unreadable: none of its steps were imported"]


@pytest.mark.parametrize(
    ("gpu", "expected", "warned"),
    [
        ("true", 1, False),
        ("false", None, False),
        ('"optional"', None, True),
        ('{"cores": 1000, "memory": "16gb"}', 1, True),
    ],
)
def test_host_requirements_gpu(project: Path, gpu: str, expected: int | None, warned: bool) -> None:
    data, warnings = import_devcontainer(write(project, f'{{"hostRequirements": {{"gpu": {gpu}}}}}'))
    assert data.get("resources", {}).get("gpu") == expected
    assert any("hostRequirements.gpu" in w for w in warnings) == warned


def test_bad_host_requirements_are_warned_not_imported(project: Path) -> None:
    data, warnings = import_devcontainer(write(project, '{"hostRequirements": {"cpus": -2, "memory": "lots"}}'))
    assert "resources" not in data
    assert warnings == [
        "hostRequirements.cpus (-2) not imported: expected a number of CPUs more than 0",
        "hostRequirements.memory ('lots') not imported: expected a size like \"32gb\"",
    ]


def test_env_values_that_cannot_be_copied_are_warned(project: Path) -> None:
    text = '{"containerEnv": {"A": "${localEnv:HOME}", "bad-name": "x", "N": 3, "T": true}, "remoteEnv": {"U": null}}'
    data, warnings = import_devcontainer(write(project, text))
    assert data["env"] == {"N": "3", "T": "true"}
    assert len(warnings) == 3
    assert any("containerEnv.A not imported" in w and "${localEnv:HOME}" in w for w in warnings)


@pytest.mark.parametrize(
    ("jsonc", "expected"),
    [
        ('{"a": 1, // c\n "b": [1, 2,], }', {"a": 1, "b": [1, 2]}),
        ('{"url": "http://x//y", "s": "a,]"}', {"url": "http://x//y", "s": "a,]"}),
        (
            '{"q": "say \\"hi\\" // not a comment", /* c */ "n": null}',
            {"q": 'say "hi" // not a comment', "n": None},
        ),
        ('{"a": [1, /* x */ ], "b": {"c": 2 , /*y*/ } }', {"a": [1], "b": {"c": 2}}),
        ('{"back": "C:\\\\", "x": 1}', {"back": "C:\\", "x": 1}),
    ],
)
def test_strip_jsonc_keeps_strings_intact(jsonc: str, expected: object) -> None:
    assert json.loads(strip_jsonc(jsonc)) == expected


def test_strip_jsonc_keeps_positions() -> None:
    text = '{ /* a\nb */ "k": 1, // x\n}'
    stripped = strip_jsonc(text)
    assert len(stripped) == len(text) and stripped.count("\n") == text.count("\n")
    assert stripped.index('"k"') == text.index('"k"')
