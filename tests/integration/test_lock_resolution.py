"""The lock against the real index (PyPI, through uv): what devenv adds to a project's Python set never
overrules the project's own pins."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from devenv.build.tooling import KERNEL_REQUIREMENTS
from devenv.lock.python import resolve_python


def test_a_project_pinning_an_older_ipykernel_keeps_its_pin(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("ipykernel==6.15.1\n")  # a real repository's pin (the corpus's spam classifier)
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    locked = resolve_python([requirements], list(KERNEL_REQUIREMENTS), python="3.11", arch="x86_64", glibc="2.36",
                            exclude_newer=today, root=tmp_path)
    versions = {package.name: package.version for package in locked}
    assert versions["ipykernel"] == "6.15.1"


def test_a_project_capping_typing_extensions_gets_a_kernel_that_starts(tmp_path: Path) -> None:
    # tensorflow 2.13 caps typing_extensions below 4.6; IPython 8.23.0 needs 4.6 without saying so
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("typing_extensions==4.5.0\nipython<8.24\n")
    locked = resolve_python([requirements], list(KERNEL_REQUIREMENTS), python="3.11", arch="x86_64", glibc="2.36",
                            exclude_newer="2026-01-01T00:00:00Z", root=tmp_path)
    versions = {package.name: package.version for package in locked}
    assert versions["typing-extensions"] == "4.5.0"
    assert versions["ipython"] != "8.23.0" and versions["ipython"].startswith("8.")
