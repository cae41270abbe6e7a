"""devenv/ type-checks with zero mypy errors, under the config in pyproject.toml ([tool.mypy]).

Why in the suite: a wrong type (a str where an int is meant, an optional read as present) is a bug that no
test may reach; the newest modules are held to mypy's strict flags. mypy keeps its cache in .mypy_cache, so
a run after the first checks only what changed (a cold run takes ~30 s on 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mypy_config() -> dict[str, object]:
    config: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    return config


@pytest.mark.timeout(170)
def test_devenv_type_checks_with_zero_errors() -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=150
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mypy ran past {exc.timeout} s (a cold cache takes ~30 s): {exc.stdout!r}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy found errors (run `python -m mypy` to see them):\n{output}"
    assert "Success: no issues found" in result.stdout, output


def test_the_config_checks_devenv_and_names_only_modules_that_exist() -> None:
    """A strict module renamed or moved would fall out of strict quietly: every name must still be a module."""
    config = _mypy_config()
    assert config["packages"] == ["devenv"]
    assert config["check_untyped_defs"] is True
    overrides = config["overrides"]
    assert isinstance(overrides, list)
    strict = [entry for entry in overrides if entry.get("disallow_untyped_defs")]
    assert strict, "no module is held to the strict flags"
    missing = []
    for entry in strict:
        for module in entry["module"]:
            path = ROOT / module.removesuffix(".*").replace(".", "/")
            if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
                missing.append(module)
    assert not missing, f"strict modules in pyproject.toml that no longer exist: {missing}"
