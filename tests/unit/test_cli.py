"""The `devenv` command line, driven in-process through main(argv); nothing here needs a Docker engine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.build.project import lock_inputs, open_project
from devenv.cli.main import main
from devenv.lock.lockfile import read_lock, write_lock
from devenv.lock.models import LOCK_FILENAME, BaseImage, Lock
from devenv.spec.scaffold import available_templates

DEVCONTAINER_JSON = """\
// A devcontainer as teams write them: comments, trailing commas, features.
{
    "name": "Vision Lab",
    /* the image is replaced by devenv's pinned base */
    "image": "mcr.microsoft.com/devcontainers/python:3.11",
    "features": {
        "ghcr.io/devcontainers/features/node:1": {"version": "lts"},
        "ghcr.io/devcontainers/features/github-cli:1": {},
    },
    "forwardPorts": [8080, "6006"],
    "containerEnv": {
        "OMP_NUM_THREADS": "4",
        "PYTHONUNBUFFERED": "1",  // keep logs live
    },
    "postCreateCommand": "pip install --user pre-commit",
    "customizations": {"vscode": {"extensions": ["ms-python.python"]}},
}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative defaults (devenv.yaml, .) resolve inside tmp_path; no debug tracebacks."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEVENV_DEBUG", raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `devenv ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else code), captured.out, captured.err


def assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output
        assert "internal error" not in output


def make_project(capsys: pytest.CaptureFixture[str], directory: Path) -> Path:
    code, _, err = cli(capsys, "init", "--template", "minimal", "--dir", str(directory))
    assert code == 0, err
    return directory / "devenv.yaml"


def write_matching_lock(spec_path: Path) -> Lock:
    """A lock whose inputs match the spec, made from the models (no network, no engine)."""
    project = open_project(spec_path)
    lock = Lock(
        resolved_at="2024-06-01T12:00:00Z",
        inputs=lock_inputs(project, "x86_64"),
        base=BaseImage(
            recipe="cpu",
            image="devenv/base:cpu-0123456789ab",
            digest="sha256:" + "a" * 64,
            source="bootstrap",
            upstream="docker.io/library/debian:bookworm-slim@sha256:" + "b" * 64,
            python="3.11",
        ),
        apt=[],
        python=[],
        tooling=[],
    )
    write_lock(lock, project.lock_path)
    return lock


# ---- general ----


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--help")
    assert code == 0
    for command in ("init", "validate", "schema", "lock", "build"):
        assert command in out
    assert_no_traceback(out, err)


def test_console_script_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [shutil.which("devenv") or "devenv", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout


@pytest.mark.parametrize("args", [["no-such-command"], ["validate", "--no-such-option"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert "No such" in err
    assert_no_traceback(out, err)


def test_unknown_command_fails_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "no-such-command")
    assert code != 0
    assert "no-such-command" in err
    assert "Traceback" not in out + err


def test_no_arguments_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys)
    assert code in (0, 2)
    assert "Usage" in out + err
    assert_no_traceback(out, err)


# ---- init ----


def test_init_from_template(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "My Cool_Project"
    code, out, err = cli(capsys, "init", "--template", "minimal", "--dir", str(directory))
    assert code == 0, err
    spec = directory / "devenv.yaml"
    assert spec.is_file()
    assert (directory / "requirements.in").is_file()
    assert re.search(r"^name: my-cool-project$", spec.read_text(), re.MULTILINE)
    assert "devenv.yaml" in out
    assert open_project(spec).spec.name == "my-cool-project"


def test_init_with_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "folder"
    code, _, err = cli(capsys, "init", "--template", "sklearn", "--dir", str(directory), "--name", "team-lab")
    assert code == 0, err
    assert open_project(directory / "devenv.yaml").spec.name == "team-lab"


def test_init_twice_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "proj"
    make_project(capsys, directory)
    (directory / "requirements.in").write_text("numpy\n")
    code, out, err = cli(capsys, "init", "--template", "minimal", "--dir", str(directory))
    assert code == 2
    assert str(directory / "devenv.yaml") in err
    assert "--force" in err
    assert (directory / "requirements.in").read_text() == "numpy\n"
    assert_no_traceback(out, err)


def test_init_force_overwrites(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "proj"
    make_project(capsys, directory)
    (directory / "requirements.in").write_text("numpy\n")
    code, _, err = cli(capsys, "init", "--template", "minimal", "--dir", str(directory), "--force")
    assert code == 0, err
    assert (directory / "requirements.in").read_text() != "numpy\n"


def test_init_unknown_template(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "init", "--template", "nope", "--dir", str(tmp_path / "p"))
    assert code == 2
    assert "nope" in err
    templates = available_templates()
    assert {"minimal", "sklearn", "pytorch", "jax"} <= set(templates)
    for name in templates:
        assert name in err
    assert not (tmp_path / "p").exists()
    assert_no_traceback(out, err)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--template", "minimal", "--from", "devcontainer.json"],
    ],
)
def test_init_needs_exactly_one_source(capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "devcontainer.json").write_text(DEVCONTAINER_JSON)
    code, out, err = cli(capsys, "init", *args, "--dir", str(tmp_path / "p"))
    assert code == 2
    assert "--template" in err and "--from" in err
    assert not (tmp_path / "p" / "devenv.yaml").exists()
    assert_no_traceback(out, err)


def test_init_from_devcontainer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / ".devcontainer" / "devcontainer.json"
    source.parent.mkdir()
    source.write_text(DEVCONTAINER_JSON)
    directory = tmp_path / "imported"
    code, out, err = cli(capsys, "init", "--from", str(source), "--dir", str(directory))
    assert code == 0, err
    assert "ghcr.io/devcontainers/features/node:1" in err
    assert "ghcr.io/devcontainers/features/github-cli:1" in err
    assert "warning" in err
    assert_no_traceback(out, err)

    spec_path = directory / "devenv.yaml"
    assert (directory / "requirements.in").is_file()
    code, out, err = cli(capsys, "validate", str(spec_path))
    assert code == 0, err
    assert "ok" in out
    spec = open_project(spec_path).spec
    assert spec.name == "vision-lab"
    assert spec.ports == [8080, 6006]
    assert spec.env == {"OMP_NUM_THREADS": "4", "PYTHONUNBUFFERED": "1"}
    assert spec.setup == [] and spec.hooks.create == ["pip install pre-commit"]  # at runtime, into the venv


def test_init_from_missing_devcontainer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "init", "--from", str(tmp_path / "nope.json"), "--dir", str(tmp_path / "p"))
    assert code == 2
    assert "nope.json" in err
    assert_no_traceback(out, err)


# ---- validate and schema ----

THREE_ERRORS = """\
name: Bad Name
python: 3
requirements: []
ports: [0]
"""


def test_validate_reports_every_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "devenv.yaml"
    path.write_text(THREE_ERRORS)
    code, out, err = cli(capsys, "validate", str(path))
    assert code == 2
    located = re.findall(rf"{re.escape(str(path))}:(\d+):(\d+): ([^:\s]+): ", err)
    assert [(line, field) for line, _, field in located] == [("1", "name"), ("2", "python"), ("4", "ports[0]")]
    assert all(int(column) >= 1 for _, column, _ in located)
    assert "Bad Name" in err
    assert_no_traceback(out, err)


def test_validate_json_prints_a_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "devenv.yaml"
    path.write_text(THREE_ERRORS)
    _, out, err = cli(capsys, "validate", "--json", str(path))
    issues = json.loads(out)
    assert isinstance(issues, list)
    assert [issue["field"] for issue in issues] == ["name", "python", "ports[0]"]
    assert [issue["line"] for issue in issues] == [1, 2, 4]
    assert all(issue["file"] == str(path) for issue in issues)
    assert {"file", "line", "column", "field", "message", "hint"} <= set(issues[0])
    assert_no_traceback(out, err)


def test_validate_json_exits_2_on_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "devenv.yaml"
    path.write_text(THREE_ERRORS)
    code, _, _ = cli(capsys, "validate", "--json", str(path))
    assert code == 2


def test_validate_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = make_project(capsys, tmp_path / "lab")
    code, out, err = cli(capsys, "validate", str(spec))
    assert code == 0, err
    assert "ok (lab)" in out


def test_validate_default_file_in_cwd(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make_project(capsys, tmp_path)
    code, out, err = cli(capsys, "validate")
    assert code == 0, err
    assert "ok" in out


def test_validate_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "validate", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert "absent.yaml" in err
    assert_no_traceback(out, err)


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "schema")
    assert code == 0, err
    schema = json.loads(out)
    assert "name" in schema["properties"]
    assert "resources" in schema["properties"]
    assert "name" in schema.get("required", [])


# ---- lock --check ----


def test_lock_check_up_to_date(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = make_project(capsys, tmp_path / "lab")
    lock = write_matching_lock(spec)
    code, out, err = cli(capsys, "lock", "--check", "-f", str(spec))
    assert code == 0, err
    assert "up to date" in out
    assert lock.content_hash()[:12] in out


def test_lock_check_after_requirements_change(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = make_project(capsys, tmp_path / "lab")
    write_matching_lock(spec)
    requirements = spec.parent / "requirements.in"
    requirements.write_text(requirements.read_text() + "numpy\n")
    code, out, err = cli(capsys, "lock", "--check", "-f", str(spec))
    assert code == 1
    assert "requirements.in changed" in err
    assert "lock_mismatch" in err
    assert "devenv lock" in err
    assert_no_traceback(out, err)


def test_lock_check_after_spec_change(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = make_project(capsys, tmp_path / "lab")
    write_matching_lock(spec)
    spec.write_text(spec.read_text().replace("apt: []", "apt: [curl]"))
    code, out, err = cli(capsys, "lock", "--check", "-f", str(spec))
    assert code == 1
    assert "'curl' is in the spec but not in the lock" in err
    assert_no_traceback(out, err)


def test_lock_check_without_a_lock(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = make_project(capsys, tmp_path / "lab")
    code, out, err = cli(capsys, "lock", "--check", "-f", str(spec))
    assert code == 1
    assert "lock_missing" in err
    assert "devenv lock" in err
    assert not (spec.parent / LOCK_FILENAME).exists()
    assert_no_traceback(out, err)


def test_lock_check_does_not_rewrite_the_lock(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = make_project(capsys, tmp_path / "lab")
    lock = write_matching_lock(spec)
    before = (spec.parent / LOCK_FILENAME).read_bytes()
    cli(capsys, "lock", "--check", "-f", str(spec))
    assert (spec.parent / LOCK_FILENAME).read_bytes() == before
    assert read_lock(spec.parent / LOCK_FILENAME) == lock


# ---- commands that end in another program's command line ----


class FakeClient:
    """Stands in for the daemon client: records what `exec` was asked to run, answers with an exit code."""

    calls: list[tuple[str, list[str], str]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def exec(self, name: str, argv: list[str], *, user: str = "dev") -> Iterator[tuple[str, bytes | int]]:
        FakeClient.calls.append((name, argv, user))
        if argv == ["interrupt"]:
            raise KeyboardInterrupt
        yield "stdout", b"out\n"
        yield "stderr", b"err\n"
        yield "exit", 3


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], str]]:
    import devenv.cli.workspaces

    FakeClient.calls = []
    monkeypatch.setattr(devenv.cli.workspaces, "Client", FakeClient)
    return FakeClient.calls


@pytest.mark.parametrize(
    ("args", "argv", "user"),
    [
        (["p1", "--", "sh", "-c", "exit 3"], ["sh", "-c", "exit 3"], "dev"),
        (["p1", "sh", "-c", "exit 3"], ["sh", "-c", "exit 3"], "dev"),
        (["--root", "p1", "--", "id", "-un", "--", "x"], ["id", "-un", "--", "x"], "root"),
        (["p1", "python", "--version", "-h"], ["python", "--version", "-h"], "dev"),
    ],
)
def test_exec_passes_the_command_as_given(
    capsys: pytest.CaptureFixture[str], fake_client: list[Any], args: list[str], argv: list[str], user: str
) -> None:
    code, out, err = cli(capsys, "exec", *args)
    assert fake_client == [("p1", argv, user)]
    assert code == 3
    assert out == "out\n"
    assert err == "err\n"


@pytest.mark.parametrize("args", [["p1"], ["p1", "--"]])
def test_exec_without_a_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], fake_client: list[Any], args: list[str]
) -> None:
    code, out, err = cli(capsys, "exec", *args)
    assert code == 2
    assert "COMMAND" in err
    assert fake_client == []
    assert_no_traceback(out, err)


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str], fake_client: list[Any]) -> None:
    code, out, err = cli(capsys, "exec", "p1", "--", "interrupt")
    assert code == 130
    assert "interrupted" in err
    assert_no_traceback(out, err)


def test_daemon_status_exits_1_when_not_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEVENV_SOCKET", raising=False)
    code, out, err = cli(capsys, "daemon", "status")
    assert code == 1
    assert "not running" in out
    assert_no_traceback(out, err)


def test_help_shows_arguments_options_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "exec", "--help")
    assert code == 0
    assert "the command and its arguments (after --)" in out
    assert "--root" in out
    code, out, _ = cli(capsys, "validate", "-h")
    assert code == 0
    assert "the spec file" in out and "[default: devenv.yaml]" in out
    code, out, _ = cli(capsys, "init", "--help")
    assert "--force / --no-force" in out and "[default: .]" in out
    code, out, _ = cli(capsys, "login", "--help")
    assert "DEVENV_TOKEN" in out


# ---- what a command costs before it does anything ----

HEAVY = ("typer", "pydantic", "rich", "docker", "yaml", "jinja2", "devenv.spec", "devenv.build")


def _heavy(modules: list[str]) -> list[str]:
    return sorted(name for name in modules if any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY))


def test_importing_the_cli_stays_light(tmp_path: Path) -> None:
    """`devenv ls` and `--help` must not pay for pydantic, rich, the Docker SDK or the build code."""
    code = "import sys, devenv.cli.main, devenv.cli.workspaces, devenv.client; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "devenv.client" in loaded
    assert _heavy(loaded) == []


@pytest.mark.parametrize("args", [["ls", "--help"], ["--help"]])
def test_help_imports_stay_light(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "devenv", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "click" in loaded
    if args == ["--help"]:  # the listing loads every command module
        assert {"devenv.cli.workspaces", "devenv.cli.daemon", "devenv.cli.images"} <= set(loaded)
    assert _heavy(loaded) == []


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, err = cli(capsys, "--version")
    assert code == 0, err
    assert out.strip() == f"devenv {version('devenv')}"
