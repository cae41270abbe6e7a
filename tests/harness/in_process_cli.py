"""`devenv ARGS` run in the test's own process, as unit tests drive the CLI: its exit code and what it printed."""

from __future__ import annotations

import pytest

from devenv.cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `devenv ARGS`, with what was printed before it set aside."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return (0 if exited.value.code is None else int(exited.value.code)), captured.out, captured.err
