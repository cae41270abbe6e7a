"""`devenv ci run` through a real devenvd on the real engine: the spec's test command in the locked image, in
the uploaded project folder; what the tests write there comes back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import docker

from devenv.testing.projects import WorkspaceImage, copy_project
from tests.harness.devenvd import Devenvd

# Reads a file from the uploaded project, checks who and where it runs and what it is told, and writes a file
# and one in a new folder (both come back); data.txt is read, not changed (it does not come back).
PASSING = (
    'python -c \'import pathlib; assert pathlib.Path("data.txt").read_text() == "42\\n"\' '
    '&& echo "ok as $(whoami) in $PWD with CI=$CI" && echo written > result.txt '
    "&& mkdir -p reports && echo '<coverage/>' > reports/coverage.xml"
)
FAILING = 'python -c \'import sys; print("boom on stdout"); print("and on stderr", file=sys.stderr); sys.exit(3)\''


def ci_project(light_image: WorkspaceImage, folder: Path, test: str) -> Path:
    """A copy of the built light project with `ci.test` and a data file; its name is kept, so its image is
    the same (a tag lookup, not a build)."""
    name = light_image.tag.split("/", 1)[1].split(":", 1)[0]
    copy_project(light_image, folder, name, extra=f"ci:\n  test: {json.dumps(test)}\n")
    (folder / "data.txt").write_text("42\n")
    return folder


def report(path: Path) -> ET.Element:
    case = ET.parse(path).getroot().find("testsuite/testcase")
    assert case is not None
    return case


def one_shot_containers(client: docker.DockerClient, daemon: Devenvd) -> list[str]:
    """The run containers this daemon's CI runs left (its backends are named after nothing else here)."""
    return [
        container.name
        for container in client.containers.list(all=True, filters={"label": "devenv.one-shot=true"})
        if container.name.startswith("devenv-run-")
    ]


def test_passing_tests_run_in_the_uploaded_project_and_what_they_write_comes_back(
    client: docker.DockerClient, light_image: WorkspaceImage, devenvd: Devenvd, tmp_path: Path
) -> None:
    folder = ci_project(light_image, tmp_path / "project", PASSING)
    data_written = (folder / "data.txt").stat().st_mtime_ns
    before = set(one_shot_containers(client, devenvd))
    ran = devenvd.cli(
        "ci", "run", "-f", str(folder / "devenv.yaml"), "--junit", str(tmp_path / "reports" / "junit.xml")
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "ok as dev in /home/dev/project with CI=true"
    assert (folder / "result.txt").read_text() == "written\n"
    assert (folder / "reports" / "coverage.xml").read_text() == "<coverage/>\n"
    assert "the tests wrote 2 file(s)" in ran.stderr, ran.stderr
    assert (folder / "data.txt").stat().st_mtime_ns == data_written  # unchanged: not written back
    case = report(tmp_path / "reports" / "junit.xml")
    assert case.get("name") == PASSING
    assert case.find("failure") is None and case.find("error") is None
    assert "ok as dev" in (case.findtext("system-out") or "")
    assert set(one_shot_containers(client, devenvd)) <= before


def test_the_cli_exits_with_the_test_commands_code_and_reports_the_failure(
    client: docker.DockerClient, light_image: WorkspaceImage, devenvd: Devenvd, tmp_path: Path
) -> None:
    folder = ci_project(light_image, tmp_path / "project", FAILING)
    before = set(one_shot_containers(client, devenvd))
    ran = devenvd.cli("ci", "run", "-f", str(folder / "devenv.yaml"), "--junit", "out/junit.xml", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    assert "boom on stdout" in ran.stdout
    assert "and on stderr" in ran.stderr
    assert "Traceback" not in ran.stderr
    case = report(tmp_path / "out" / "junit.xml")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "exited with code 3"
    assert "boom on stdout" in (failure.text or "") and "and on stderr" in (failure.text or "")
    assert set(one_shot_containers(client, devenvd)) <= before


def test_a_spec_without_ci_test_is_refused_before_building(
    light_image: WorkspaceImage, devenvd: Devenvd, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    copy_project(light_image, folder, "it-light")
    ran = devenvd.cli("ci", "run", "--junit", "junit.xml", cwd=folder, timeout=300)
    assert ran.returncode == 2
    assert 'ci: {test: "pytest -q"}' in ran.stderr
    assert not (folder / "junit.xml").exists()
