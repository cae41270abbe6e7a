"""CI files from `devenv ci init` (GitHub workflow, pre-commit hook) and the JUnit report of `devenv ci run`.

The workflow is checked against SchemaStore's GitHub workflow schema (shipped by check-jsonschema, so
offline), and by actionlint where one is installed.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.ci.run import OUTPUT_TAIL, _Tail, junit_xml, xml_text
from devenv.ci.workflow import (
    PRE_COMMIT_PATH,
    WORKFLOW_PATH,
    github_workflow,
    pre_commit_config,
    project_root,
    write_ci_files,
)
from devenv.errors import FileExists, UsageError
from devenv.spec.models import Spec
from harness.in_process_cli import cli

SPEC = Spec(name="shop", ci={"test": "pytest -q"})


def workflow_data(text: str) -> dict[Any, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def triggers(data: dict[Any, Any]) -> dict[str, Any]:
    """`on:`, which YAML 1.1 (PyYAML) reads as the key True; GitHub reads it as "on"."""
    return data["on"] if "on" in data else data[True]


def steps(data: dict[Any, Any]) -> list[dict[str, Any]]:
    return data["jobs"]["test"]["steps"]


def test_the_workflow_runs_devenv_ci_on_push_and_pull_request() -> None:
    data = workflow_data(github_workflow(SPEC, "devenv.yaml"))
    assert set(triggers(data)) == {"push", "pull_request"}
    assert list(data["jobs"]) == ["test"]
    job = data["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    uses = [step["uses"] for step in steps(data) if "uses" in step]
    assert uses[0] == "actions/checkout@v4"
    assert "actions/upload-artifact@v4" in uses
    for action in uses:  # pinned by major version
        assert action.rsplit("@", 1)[1] in {f"v{n}" for n in range(1, 20)}, action
    runs = [step["run"] for step in steps(data) if "run" in step]
    assert any(run.startswith("python -m pip install devenv") for run in runs)
    assert runs[-1] == "devenv ci run --junit test-results.xml"
    upload = next(step for step in steps(data) if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "test-results.xml"
    assert upload["if"] == "${{ !cancelled() }}"  # a failed test run still uploads its report
    assert steps(data).index(upload) > max(i for i, step in enumerate(steps(data)) if "run" in step)


def test_a_spec_elsewhere_is_named() -> None:
    data = workflow_data(github_workflow(SPEC, "ml/my project/devenv.yaml"))
    assert [step["run"] for step in steps(data) if "run" in step][-1] == (
        "devenv ci run -f 'ml/my project/devenv.yaml' --junit test-results.xml"
    )


@pytest.mark.parametrize("spec_path", ["devenv.yaml", "ml/dev env.yaml"])
def test_the_workflow_matches_githubs_schema(tmp_path: Path, spec_path: str) -> None:
    workflow = tmp_path / "devenv.yml"
    workflow.write_text(github_workflow(SPEC, spec_path))
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_pre_commit_hook_runs_devenv_ci_before_push() -> None:
    data = yaml.safe_load(pre_commit_config("devenv.yaml"))
    (repo,) = data["repos"]
    assert repo["repo"] == "local"
    (hook,) = repo["hooks"]
    assert hook["id"] == "devenv-ci"
    assert hook["entry"] == "devenv ci run"
    assert hook["language"] == "system"
    assert hook["pass_filenames"] is False
    assert hook["stages"] == ["pre-push"]
    other = yaml.safe_load(pre_commit_config("sub/devenv.yaml"))
    assert other["repos"][0]["hooks"][0]["entry"] == "devenv ci run -f sub/devenv.yaml"


def test_write_ci_files_writes_both_and_refuses_to_overwrite(tmp_path: Path) -> None:
    written = write_ci_files(tmp_path, SPEC, "devenv.yaml", force=False)
    assert written == [tmp_path / WORKFLOW_PATH, tmp_path / PRE_COMMIT_PATH]
    assert (tmp_path / ".github/workflows/devenv.yml").read_text() == github_workflow(SPEC, "devenv.yaml")
    (tmp_path / PRE_COMMIT_PATH).write_text("# mine\n")
    with pytest.raises(FileExists) as refused:
        write_ci_files(tmp_path, SPEC, "devenv.yaml", force=False)
    assert str(tmp_path / PRE_COMMIT_PATH) in refused.value.message
    assert str(tmp_path / WORKFLOW_PATH) in refused.value.message
    assert "--force" in (refused.value.hint or "")
    assert refused.value.exit_code == 2
    assert (tmp_path / PRE_COMMIT_PATH).read_text() == "# mine\n"
    write_ci_files(tmp_path, SPEC, "devenv.yaml", force=True)
    assert (tmp_path / PRE_COMMIT_PATH).read_text() == pre_commit_config("devenv.yaml")


def test_one_existing_file_stops_both(tmp_path: Path) -> None:
    (tmp_path / PRE_COMMIT_PATH).write_text("repos: []\n")
    with pytest.raises(FileExists, match=r"\.pre-commit-config\.yaml"):
        write_ci_files(tmp_path, SPEC, "devenv.yaml", force=False)
    assert not (tmp_path / WORKFLOW_PATH).exists()


def test_a_spec_without_a_test_command_is_a_usage_error(tmp_path: Path) -> None:
    bare = Spec(name="shop")
    for call in (
        lambda: github_workflow(bare, "devenv.yaml"),
        lambda: write_ci_files(tmp_path, bare, "devenv.yaml", force=False),
    ):
        with pytest.raises(UsageError) as refused:
            call()
        assert refused.value.hint == 'add `ci: {test: "pytest -q"}` to devenv.yaml'
    assert not (tmp_path / WORKFLOW_PATH).exists()


def test_project_root_is_the_git_repository(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "ml").mkdir()
    assert project_root(tmp_path / "ml") == tmp_path.resolve()
    assert project_root(tmp_path) == tmp_path.resolve()


# ---- the command line (in-process) ----


def test_ci_init_writes_the_files_at_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "devenv.yaml").write_text("name: shop\nrequirements: []\nci:\n  test: pytest -q\n")
    monkeypatch.chdir(tmp_path / "ml")
    code, out, err = cli(capsys, "ci", "init")
    assert code == 0, err
    assert "devenv.yml" in out
    workflow = workflow_data((tmp_path / WORKFLOW_PATH).read_text())
    assert steps(workflow)[-2]["run"] == "devenv ci run -f ml/devenv.yaml --junit test-results.xml"
    code, _, err = cli(capsys, "ci", "init")
    assert code == 2
    assert "--force" in err and "Traceback" not in err
    assert cli(capsys, "ci", "init", "--force")[0] == 0


def test_ci_init_without_a_test_command_says_what_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "devenv.yaml").write_text("name: shop\nrequirements: []\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "ci", "init")
    assert code == 2
    assert 'ci: {test: "pytest -q"}' in err
    assert not (tmp_path / WORKFLOW_PATH).exists()


# ---- the JUnit report of `devenv ci run` ----


def test_a_passing_run_reports_its_output_as_system_out() -> None:
    report = junit_xml(suite="shop", command="pytest -q", code=0, seconds=1.23456, output=b"3 passed\n")
    assert report == junit_xml(suite="shop", command="pytest -q", code=0, seconds=1.23456, output=b"3 passed\n")
    root = ET.fromstring(report)
    assert root.tag == "testsuites"
    (suite,) = root
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("devenv ci", "1", "0")
    (case,) = suite
    assert (case.get("name"), case.get("time")) == ("pytest -q", "1.235")
    assert case.find("failure") is None
    assert case.findtext("system-out") == "3 passed\n"


def test_a_failing_run_reports_a_failure_with_its_code_and_output() -> None:
    output = b"E   assert 1 == 2\n\x1b[31mFAILED\x1b[0m \x00\x07 <&> caf\xc3\xa9 \xff\n"
    report = junit_xml(suite="shop", command='pytest -q -k "a & b"', code=3, seconds=0.5, output=output)
    root = ET.fromstring(report)  # control characters and bad UTF-8 did not make it invalid
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == "exited with code 3"
    assert "assert 1 == 2" in (failure.text or "")
    assert "FAILED \\x00\\x07 <&> café \ufffd" in (failure.text or "")
    assert root.find("testsuite/testcase").get("name") == 'pytest -q -k "a & b"'  # type: ignore[union-attr]


def test_a_build_failure_is_an_error() -> None:
    report = junit_xml(suite="shop", command="pytest", code=None, seconds=2, output=b"", error="build failed")
    case = ET.fromstring(report).find("testsuite/testcase")
    assert case is not None
    error = case.find("error")
    assert error is not None and error.get("message") == "build failed"
    assert ET.fromstring(report).find("testsuite").get("errors") == "1"  # type: ignore[union-attr]


def test_only_the_last_64_kib_of_output_is_kept() -> None:
    tail = _Tail(OUTPUT_TAIL)
    for index in range(100):
        tail.add(f"line {index:03d} ".encode() * 100 + b"\n")
    assert len(tail.data) == OUTPUT_TAIL
    assert tail.dropped == 100 * 901 - OUTPUT_TAIL
    assert tail.data.endswith(b"line 099 \n")
    report = junit_xml(suite="s", command="c", code=1, seconds=1, output=bytes(tail.data), dropped=tail.dropped)
    text = ET.fromstring(report).findtext("testsuite/testcase/failure") or ""
    assert text.startswith(f"[{tail.dropped} earlier bytes of output not kept]\n")


def test_xml_text_keeps_tabs_and_newlines() -> None:
    assert xml_text("a\tb\r\nc\x1b[1mbold\x1b[0m\x0c") == "a\tb\r\ncbold\\x0c"
