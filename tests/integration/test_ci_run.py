"""`devenv ci run` on the real engine: the spec's test command in the locked image, with the project mounted."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import docker

from devenv.build.project import open_project
from devenv.ci.run import CI_LABEL, run_ci
from devenv.testing.projects import WorkspaceImage, copy_project

# Reads a file from the mounted project, checks who and where it runs, and writes back into the project.
PASSING = (
    'python -c \'import pathlib; assert pathlib.Path("data.txt").read_text() == "42\\n"\' '
    '&& echo "ok as $(whoami) in $PWD" && echo written > result.txt'
)
FAILING = 'python -c \'import sys; print("boom on stdout"); print("and on stderr", file=sys.stderr); sys.exit(3)\''


def ci_project(light_image: WorkspaceImage, folder: Path, test: str) -> Path:
    """A copy of the built light project with `ci.test` and a data file; its name is kept, so its image is
    the same (a tag lookup, not a build)."""
    name = light_image.tag.split("/", 1)[1].split(":", 1)[0]
    copy_project(light_image, folder, name, extra=f"ci:\n  test: {json.dumps(test)}\n")
    (folder / "data.txt").write_text("42\n")
    folder.chmod(0o777)  # the tests run as `dev`, whose uid owns nothing here
    return folder


def report(path: Path) -> ET.Element:
    case = ET.parse(path).getroot().find("testsuite/testcase")
    assert case is not None
    return case


def no_ci_containers(client: docker.DockerClient, name: str) -> bool:
    return not client.containers.list(all=True, filters={"label": f"{CI_LABEL}={name}"})


def test_passing_tests_read_the_mounted_project_and_report_no_failure(
    client: docker.DockerClient, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    folder = ci_project(light_image, tmp_path / "project", PASSING)
    project = open_project(folder / "devenv.yaml")
    out, err = io.BytesIO(), io.BytesIO()
    code = run_ci(client, project, junit=tmp_path / "reports" / "junit.xml", out=out, err=err)
    assert code == 0, err.getvalue().decode()
    assert out.getvalue().decode().strip() == "ok as dev in /home/dev/project"
    assert (folder / "result.txt").read_text() == "written\n"  # mounted read-write
    case = report(tmp_path / "reports" / "junit.xml")
    assert case.get("name") == PASSING
    assert case.find("failure") is None and case.find("error") is None
    assert "ok as dev" in (case.findtext("system-out") or "")
    assert no_ci_containers(client, project.spec.name)


def test_the_cli_exits_with_the_test_commands_code_and_reports_the_failure(
    client: docker.DockerClient, light_image: WorkspaceImage, tmp_path: Path
) -> None:
    folder = ci_project(light_image, tmp_path / "project", FAILING)
    binary = shutil.which("devenv")
    assert binary, "devenv is installed by tests/setup.sh"
    ran = subprocess.run(
        [binary, "ci", "run", "-f", str(folder / "devenv.yaml"), "--junit", "out/junit.xml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    assert ran.returncode == 3, ran.stderr
    assert "boom on stdout" in ran.stdout
    assert "and on stderr" in ran.stderr
    assert "up to date" in ran.stderr  # the image was a tag lookup, not a rebuild
    assert "Traceback" not in ran.stderr
    case = report(tmp_path / "out" / "junit.xml")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "exited with code 3"
    assert "boom on stdout" in (failure.text or "") and "and on stderr" in (failure.text or "")
    assert no_ci_containers(client, "it-light")


def test_a_spec_without_ci_test_is_refused_before_building(light_image: WorkspaceImage, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    copy_project(light_image, folder, "it-light")
    binary = shutil.which("devenv")
    assert binary
    ran = subprocess.run(
        [binary, "ci", "run", "--junit", "junit.xml"],
        cwd=folder,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert ran.returncode == 2
    assert 'ci: {test: "pytest -q"}' in ran.stderr
    assert not (folder / "junit.xml").exists()
