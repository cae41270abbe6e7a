"""Lazy access to the CLI's rich display: `devenv ls` and `--help` should not pay for importing rich."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from devenv.errors import DevenvError


def err_console() -> Console:
    from devenv.cli.display import err_console as console

    return console


def out_console() -> Console:
    from devenv.cli.display import out_console as console

    return console


def ProgressDisplay(*args: Any, **kwargs: Any) -> Any:
    from devenv.cli.display import ProgressDisplay as Display

    return Display(*args, **kwargs)


def show_error(error: DevenvError) -> None:
    from devenv.cli.display import show_error as show

    show(error)
