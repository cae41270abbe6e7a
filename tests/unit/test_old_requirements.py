"""Requirements written long ago: requirements_as_of (loose requirements resolved against PyPI as it stood when
they were written) and old_pins (exact pins made for an older Python).

The spec fields (located errors), `devenv init` taking the day from git (and --as-of) and old_pins from the
Python the project names, and the lock's inputs: both are part of what the lock must match, and locks without
them keep their bytes. Resolution against the real index: tests/integration/test_lock_resolution.py and
test_sdist_packages.py."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Literal

import pytest

from devenv.cli.main import main
from devenv.errors import SpecInvalid
from devenv.lock.lockfile import differences, dump_lock
from devenv.lock.models import BaseImage, Lock, LockInputs
from devenv.spec import load_spec
from devenv.spec.discover import BASES, STALE_AFTER, WHEELS_SINCE, base_python, discover
from devenv.spec.loader import load_spec_text
from devenv.spec.models import SPEC_FILENAME

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def checkout(root: Path, day: str, files: dict[str, str] | None = None) -> Path:
    """A git checkout whose one commit (dated `day`) holds `files`."""
    root.mkdir(parents=True)
    for name, text in (files or {"requirements.txt": "pandas\nnumpy==1.23.5\n"}).items():
        (root / name).write_text(text)
    stamp = {"GIT_AUTHOR_DATE": f"{day}T12:00:00Z", "GIT_COMMITTER_DATE": f"{day}T12:00:00Z"}
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "deps"]):
        subprocess.run(["git", "-C", str(root), *command], check=True, capture_output=True, env={**os.environ, **stamp})
    return root


def days_ago(days: int) -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)).isoformat()


# ---- the spec field ----


def test_the_field_takes_a_day_quoted_or_not(tmp_path: Path) -> None:
    (tmp_path / "requirements.in").write_text("numpy\n")
    quoted = load_spec_text('name: x\nrequirements_as_of: "2023-09-30"\n', SPEC_FILENAME, tmp_path)
    bare = load_spec_text("name: x\nrequirements_as_of: 2023-09-30\n", SPEC_FILENAME, tmp_path)  # YAML: a date
    assert quoted.requirements_as_of == bare.requirements_as_of == "2023-09-30"
    assert load_spec_text("name: x\n", SPEC_FILENAME, tmp_path).requirements_as_of is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('"2023-02-30"', "is not a day"),
        ("yesterday", "is not a day"),
        ("20230930", "expected a day"),
        ('"2999-01-01"', "in the future"),
        ('"1999-01-01"', "before PyPI kept upload times"),
    ],
)
def test_a_bad_day_is_located(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "requirements.in").write_text("numpy\n")
    with pytest.raises(SpecInvalid) as caught:
        load_spec_text(textwrap.dedent(f"name: x\nrequirements_as_of: {text}\n"), SPEC_FILENAME, tmp_path)
    [issue] = caught.value.issues
    assert (issue.line, issue.field) == (2, "requirements_as_of") and words in issue.message
    assert "YYYY-MM-DD" in (issue.hint or "")


# ---- init takes the day from git ----


def test_old_dependency_files_get_the_day_no_earlier_than_the_pythons_wheels(tmp_path: Path) -> None:
    root = checkout(tmp_path / "old", "2021-03-04")
    found = discover(root)
    assert found.data["requirements_as_of"] == WHEELS_SINCE["3.11"]
    note = next(n.text for n in found.notes if "requirements_as_of" in n.text)
    assert "last changed on 2021-03-04" in note and "`--as-of today`" in note


def test_every_base_python_has_a_floor() -> None:
    """A base whose Python is missing from WHEELS_SINCE would silently get no requirements_as_of."""
    assert {base_python(base) for base in BASES} <= set(WHEELS_SINCE)


def test_a_cuda_project_gets_its_pythons_floor(tmp_path: Path) -> None:
    root = checkout(
        tmp_path / "gpu",
        "2022-12-03",
        {"environment.yml": "dependencies:\n  - pytorch-cuda=11.7\n  - pip:\n    - numpy\n"},
    )
    found = discover(root)
    assert found.data["base"] == "cuda" and found.data["python"] == base_python("cuda")
    assert found.data["requirements_as_of"] == WHEELS_SINCE[base_python("cuda")]


def test_a_day_after_the_floor_is_taken_as_it_is(tmp_path: Path) -> None:
    day = "2024-02-11"
    assert day > WHEELS_SINCE["3.11"] and dt.date.fromisoformat(day) < dt.date.today() - STALE_AFTER
    root = checkout(tmp_path / "p", day)
    (root / "README.md").write_text("a later change to another file does not move the day\n")
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "docs"], check=True)
    assert discover(root).data["requirements_as_of"] == day


def test_recent_or_uncommitted_dependencies_resolve_against_todays_index(tmp_path: Path) -> None:
    recent = checkout(tmp_path / "recent", days_ago(10))
    assert "requirements_as_of" not in discover(recent).data
    edited = checkout(tmp_path / "edited", "2022-01-01")
    (edited / "requirements.txt").write_text("pandas\nnumpy==1.26.4\n")  # being changed now
    assert "requirements_as_of" not in discover(edited).data
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "requirements.txt").write_text("pandas\n")
    assert "requirements_as_of" not in discover(plain).data  # not a checkout: no history to read


def test_as_of_given_or_today_wins_over_git(tmp_path: Path) -> None:
    root = checkout(tmp_path / "p", "2021-03-04")
    assert discover(root, as_of="2024-05-06").data["requirements_as_of"] == "2024-05-06"
    assert "requirements_as_of" not in discover(root, as_of="today").data


def test_the_cli_writes_the_day_and_refuses_a_bad_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = checkout(tmp_path / "p", "2021-03-04")
    with pytest.raises(SystemExit) as exited:
        main(["init", "--dir", str(root), "--as-of", "2024-13-01"])
    assert exited.value.code == 2 and "--as-of" in capsys.readouterr().err
    assert not (root / SPEC_FILENAME).exists()
    with pytest.raises(SystemExit) as exited:
        main(["init", "--dir", str(root)])
    assert exited.value.code in (0, None)
    assert load_spec(root / SPEC_FILENAME).requirements_as_of == WHEELS_SINCE["3.11"]
    with pytest.raises(SystemExit) as exited:
        main(["init", "--template", "minimal", "--as-of", "today", "--dir", str(tmp_path / "t")])
    assert exited.value.code == 2


# ---- the lock's inputs ----


def inputs(as_of: str | None = None, old_pins: Literal["refuse", "move"] = "refuse") -> LockInputs:
    return LockInputs(
        base="cpu",
        python="3.11",
        platform="x86_64-manylinux_2_36",
        apt=[],
        requirements={},
        extra_python=[],
        tooling=[],
        requirements_as_of=as_of,
        old_pins=old_pins,
    )


def test_a_lock_without_the_day_keeps_its_bytes_and_a_changed_day_is_a_mismatch() -> None:
    assert "requirements_as_of" not in inputs().model_dump_json()
    assert '"requirements_as_of":"2023-06-01"' in inputs("2023-06-01").model_dump_json()
    assert LockInputs.model_validate_json(inputs().model_dump_json()) == inputs()
    assert differences(inputs("2023-06-01"), inputs()) == ["requirements_as_of: spec wants '2023-06-01', lock has None"]
    assert differences(inputs("2023-06-01"), inputs("2023-06-01")) == []


def test_the_requirements_snapshot_is_the_end_of_the_day() -> None:
    assert inputs("2023-06-01").requirements_snapshot("2026-12-07T01:00:00Z") == "2023-06-01T23:59:59Z"
    assert inputs().requirements_snapshot("2026-12-07T01:00:00Z") == "2026-12-07T01:00:00Z"


def test_old_pins_is_an_input_and_the_moves_are_kept_only_when_made() -> None:
    assert "old_pins" not in inputs().model_dump_json()
    assert '"old_pins":"move"' in inputs(old_pins="move").model_dump_json()
    assert differences(inputs(old_pins="move"), inputs()) == ["old_pins: spec wants 'move', lock has 'refuse'"]
    base = BaseImage(recipe="cpu", image="i", digest="sha256:0", source="bootstrap", upstream="u", python="3.11")
    lock = Lock(resolved_at="2026-01-01T00:00:00Z", inputs=inputs(), base=base, apt=[], python=[], tooling=[])
    assert "moved" not in dump_lock(lock)
    moved = lock.model_copy(update={"moved": {"pandas": "1.0.3 -> 1.5.0"}})
    assert "pandas: 1.0.3 -> 1.5.0" in dump_lock(moved)


# ---- old_pins: the spec and init ----


def test_old_pins_takes_refuse_or_move(tmp_path: Path) -> None:
    (tmp_path / "requirements.in").write_text("numpy\n")
    assert load_spec_text("name: x\n", SPEC_FILENAME, tmp_path).old_pins == "refuse"
    assert load_spec_text("name: x\nold_pins: move\n", SPEC_FILENAME, tmp_path).old_pins == "move"
    with pytest.raises(SpecInvalid) as caught:
        load_spec_text("name: x\nold_pins: bump\n", SPEC_FILENAME, tmp_path)
    [issue] = caught.value.issues
    assert (issue.line, issue.field) == (2, "old_pins")


@pytest.mark.parametrize(
    ("files", "move"),
    [
        ({"runtime.txt": "python-3.8.9\n"}, True),
        ({".python-version": "3.9\n"}, True),
        ({"pyproject.toml": '[project]\nname = "p"\nversion = "1"\nrequires-python = ">=3.7,<3.10"\n'}, True),
        ({".python-version": "3.11\n"}, False),
        ({"pyproject.toml": '[project]\nname = "p"\nversion = "1"\nrequires-python = ">=3.8"\n'}, False),
        ({"runtime.txt": "python-3.8.9\n", ".python-version": "3.11\n"}, False),
    ],
)
def test_init_moves_old_pins_for_a_project_written_for_an_older_python(
    tmp_path: Path, files: dict[str, str], move: bool
) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "requirements.txt").write_text("pandas==1.0.3\n")
    for name, text in files.items():
        (root / name).write_text(text)
    found = discover(root)
    assert (found.data.get("old_pins") == "move") is move
    assert any("old_pins: move" in note.text for note in found.notes) is move


def test_dependency_files_older_than_the_pythons_wheels_move_old_pins(tmp_path: Path) -> None:
    assert discover(checkout(tmp_path / "old", "2021-03-04")).data["old_pins"] == "move"
    assert "old_pins" not in discover(checkout(tmp_path / "newer", "2024-02-11")).data
