"""How the CLI shows progress and errors: rich on a terminal, plain lines elsewhere."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status

from devenv.errors import DevenvError, SpecInvalid
from devenv.progress import ProgressEvent

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class ProgressDisplay:
    """Prints phases and build steps as lines; shows the latest log line and download count live."""

    def __init__(self, console: Console = err_console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._status: Status | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            self._status = self.console.status("working…")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """The live status line gone (a command's own output follows)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "phase":
            self.console.print(f"[bold blue]==>[/] {event.message}", markup=True)
        elif event.kind == "step":
            self.console.print(f"[bold]Step {event.current}/{event.total}[/]: {event.message}", markup=True)
        elif event.kind == "done":
            self.console.print(f"[bold green]✓[/] {event.message}", markup=True)
        elif event.kind == "download":
            self._update(f"{event.current}/{event.total} {event.message}")
        elif event.kind == "log":
            if self.verbose:
                self.console.print(event.message, markup=False, style="dim")
            self._update(event.message)

    def _update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text[: max(10, self.console.width - 4)])


def show_error(error: DevenvError) -> None:
    """`error (code): message`, then the details: each spec issue on its own line, or the hint."""
    err_console.print(f"[bold red]error[/] [dim]({error.code})[/]: ", markup=True, highlight=False, end="")
    err_console.print(error.message, markup=False, highlight=False)
    details = [issue.render() for issue in error.issues] if isinstance(error, SpecInvalid) else []
    if error.hint:
        details.append(f"hint: {error.hint}")
    for line in details:
        err_console.print(f"  {line}", markup=False, highlight=False)
