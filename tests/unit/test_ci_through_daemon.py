"""`devenv ci run` through the daemon: the real CLI against a fake daemon on a real socket (a FakeBackend
behind it), and the files the tests write coming back (devenv/code/changes.py)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devenv.build.project import open_project
from devenv.code.changes import changed_files, write_back
from devenv.code.place import entry_hash
from devenv.errors import UsageError
from devenv.testing.daemon import FakeDaemon, project_upload
from devenv.testing.fake_images import write_fake_lock
from devenv.testing.projects import copy_template
from harness.archives import code_tar
from harness.in_process_cli import cli

CI = 'ci: {test: "pytest -q"}\nenv: {MODE: fast}\n'


def ci_project(folder: Path) -> Path:
    spec = copy_template("minimal", folder, project_name="lab")
    spec.write_text(spec.read_text() + CI)
    write_fake_lock(open_project(spec))
    (folder / "test_lab.py").write_text("def test_lab(): pass\n")
    return spec


def test_the_tests_run_on_the_daemons_engine_in_the_uploaded_folder_and_their_files_come_back(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = ci_project(tmp_path / "lab")
    cli_daemon.backend.exec_handler = lambda image, argv: (4, b"1 failed\n", b"warned\n")
    cli_daemon.backend.run_writes = {"coverage.xml": b"<coverage/>", "test_lab.py": b"def test_lab(): pass\n"}
    code, out, err = cli(capsys, "ci", "run", "-f", str(spec), "--junit", str(tmp_path / "junit.xml"))
    assert code == 4, err
    assert out == "1 failed\n" and "warned" in err
    ((image, argv, network),) = cli_daemon.backend.runs
    assert argv == ["bash", "-c", "pytest -q"] and network
    assert cli_daemon.backend.images == {image}  # built on the daemon's engine first
    assert cli_daemon.backend.run_envs == [{"CI": "true", "MODE": "fast"}]
    assert (spec.parent / "coverage.xml").read_text() == "<coverage/>"  # new: comes back
    assert "the tests wrote 1 file(s)" in err  # test_lab.py came back unchanged: not written
    failure = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == "exited with code 4"
    assert "1 failed" in (failure.text or "")


def test_a_build_that_fails_leaves_an_error_report_and_a_spec_without_ci_test_leaves_nothing(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = ci_project(tmp_path / "lab")
    (spec.parent / "devenv.lock").unlink()
    code, _, err = cli(capsys, "ci", "run", "-f", str(spec), "--junit", str(tmp_path / "junit.xml"))
    assert code == 1 and "lock_missing" in err and "Traceback" not in err
    error = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/error")
    assert error is not None and "devenv.lock" in (error.get("message") or "")
    assert cli_daemon.backend.runs == []

    bare = copy_template("minimal", tmp_path / "bare", project_name="bare")
    code, _, err = cli(capsys, "ci", "run", "-f", str(bare), "--junit", str(tmp_path / "none.xml"))
    assert code == 2 and 'ci: {test: "pytest -q"}' in err
    assert not (tmp_path / "none.xml").exists() and cli_daemon.backend.runs == []


def test_nobody_runs_tests_on_code_another_person_uploaded(cli_daemon: FakeDaemon, tmp_path: Path) -> None:
    api = TestClient(cli_daemon.app)
    mallory = {"Authorization": f"Bearer {cli_daemon.daemon.services.tokens.create('mallory')}"}
    tested = project_upload(tmp_path / "t", name="t", edit={"template: minimal": "template: minimal\n" + CI})
    code = api.put("/v1/code", content=code_tar({"secret.py": b"KEY = 1\n"}), headers=cli_daemon.headers).json()["hash"]
    refused = api.post("/v1/projects/ci", json={**tested, "code": code}, headers=mallory)
    assert refused.status_code == 400 and "no uploaded code" in refused.json()["message"], refused.text
    assert cli_daemon.backend.runs == []
    ran = api.post("/v1/projects/ci", json={**tested, "code": code}, headers=cli_daemon.headers)  # positive control
    assert ran.status_code == 200 and json.loads(ran.text.strip().splitlines()[-1]) == {"exit": 0}
    bad = api.post("/v1/projects/ci", json={**tested, "code": "../../etc"}, headers=cli_daemon.headers)
    assert bad.status_code == 422


def given(files: dict[str, bytes], links: dict[str, str] | None = None) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        top = tarfile.TarInfo("project")
        top.type = tarfile.DIRTYPE
        archive.addfile(top)
        for path, data in files.items():
            member = tarfile.TarInfo(f"project/{path}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
        for path, target in (links or {}).items():
            member = tarfile.TarInfo(f"project/{path}")
            member.type, member.linkname = tarfile.SYMTYPE, target
            archive.addfile(member)
    out.seek(0)
    return out


def test_only_files_created_or_changed_come_back_under_the_limit() -> None:
    before = {"same.py": entry_hash(hashlib.sha256(b"x").hexdigest(), False), "edited.py": "0" * 64}
    out = io.BytesIO()
    found = changed_files(
        given({"same.py": b"x", "edited.py": b"y", "new/report.xml": b"r", "big.bin": b"0" * 100}),
        "project",
        before,
        out,
        limit=10,
    )
    assert found.files == ["edited.py", "new/report.xml"] and found.bytes == 2
    assert found.left_out == ["big.bin (100 B)"]
    out.seek(0)
    with tarfile.open(fileobj=out) as archive:
        assert sorted(archive.getnames()) == ["edited.py", "new/report.xml"]


def test_what_comes_back_is_written_inside_the_folder_and_never_through_a_link(tmp_path: Path) -> None:
    folder, outside = tmp_path / "project", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    assert write_back(io.BytesIO(code_tar({"a/b.txt": b"1", "c.txt": b"2"})), folder) == ["a/b.txt", "c.txt"]
    assert (folder / "a" / "b.txt").read_bytes() == b"1"
    (folder / "out").symlink_to(outside)
    with pytest.raises(UsageError, match="may not be written"):
        write_back(io.BytesIO(code_tar({"out/planted.txt": b"x"})), folder)
    with pytest.raises(UsageError, match="may not be written"):
        write_back(io.BytesIO(code_tar({"../escaped.txt": b"x"})), folder)
    (folder / "linked.txt").symlink_to(outside / "target.txt")
    with pytest.raises(UsageError, match="may not be written"):
        write_back(io.BytesIO(code_tar({"linked.txt": b"x"})), folder)
    assert list(outside.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_a_folder_the_tests_grew_past_the_limit_gives_nothing_back(
    cli_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVENV_MAX_CODE_BYTES", "40000")  # read back up to 4x: 160 kB
    spec = ci_project(tmp_path / "lab")
    cli_daemon.backend.run_writes = {"small.txt": b"kept", "huge.bin": b"0" * 200_000}
    code, _, err = cli(capsys, "ci", "run", "-f", str(spec))
    assert code == 0 and "nothing given back" in err, err
    assert not (spec.parent / "huge.bin").exists() and not (spec.parent / "small.txt").exists()
    cli_daemon.backend.run_writes = {"small.txt": b"kept"}  # the positive control: under the limit, it comes back
    code, _, err = cli(capsys, "ci", "run", "-f", str(spec))
    assert code == 0 and (spec.parent / "small.txt").read_bytes() == b"kept", err
