"""What plain click lacks for devenv: argument help, full one-line command help, lazily loaded commands.

Kept small and free of heavy imports: every `devenv` invocation pays for this module.
"""

from __future__ import annotations

import functools
from pathlib import Path, PurePath
from typing import Any

import click

_CLICK_FORMATS_ARGUMENTS = hasattr(click.Command, "format_arguments")
PATH = click.Path(path_type=Path)
"""A path parameter, given to the command as a pathlib.Path (no existence check: commands say what is wrong)."""


class Argument(click.Argument):
    """A positional argument that takes `help=`, shown in an Arguments section of the command's help."""

    def __init__(
        self, param_decls: list[str], required: bool | None = None, help: str | None = None, **attrs: Any
    ) -> None:
        super().__init__(param_decls, required=required, **attrs)
        self.help = help

    def help_row(self, ctx: click.Context) -> tuple[str, str]:
        extra = []
        if not self.required and isinstance(self.default, str | int | PurePath) and ctx.show_default:
            extra.append(f"default: {self.default}")
        if self.required:
            extra.append("required")
        text = self.help or ""
        if extra:
            text = f"{text}  [{'; '.join(extra)}]".strip()
        return self.human_readable_name + ("..." if self.nargs == -1 else ""), text


def _summary(command: click.Command) -> str:
    """The first paragraph of the help, whole (click would cut it at 45 characters or the first period)."""
    if command.short_help or not command.help:
        return ""
    return " ".join(command.help.strip().split("\n\n")[0].split())


class Command(click.Command):
    """A click command whose help lists its arguments and whose one-line summary is never cut short."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return _summary(self) or super().get_short_help_str(limit)

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [param.help_row(ctx) for param in self.get_params(ctx) if isinstance(param, Argument)]
        if rows:
            with formatter.section("Arguments"):
                formatter.write_dl(rows)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not _CLICK_FORMATS_ARGUMENTS:  # click < 8.5 has no format_arguments step in format_help
            self.format_arguments(ctx, formatter)
        super().format_options(ctx, formatter)


class Group(click.Group):
    """Commands in definition order; `lazy` names commands ("module:attribute") imported only when used."""

    command_class = Command

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def get_short_help_str(self, limit: int = 45) -> str:
        return _summary(self) or super().get_short_help_str(limit)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*(name for name in self.commands if name not in self.lazy), *self.lazy]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            # __import__ rather than importlib.import_module: the same import, but -X importtime reports it
            self.commands[cmd_name] = getattr(__import__(module, fromlist=[attribute]), attribute)
        return self.commands.get(cmd_name)


command = functools.partial(click.command, cls=Command)
argument = functools.partial(click.argument, cls=Argument)

WORDS_SETTINGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}
"""For commands that end in another program's command line: its options are its own, not devenv's."""


def command_words(words: tuple[str, ...]) -> list[str]:
    """The inner command line; one leading `--` separates it from devenv's arguments and is not part of it."""
    inner = list(words[1:] if words[:1] == ("--",) else words)
    if not inner:
        raise click.UsageError("Missing argument 'COMMAND...'.", click.get_current_context())
    return inner
