"""One error tree for devenv.

Every failure a user can meet is a `DevenvError` subclass with a stable `code`.
The CLI (and later the daemon API and the TUI) render these; nothing else is
allowed to reach a user. Foreign exceptions are translated where they enter
(Docker SDK, subprocess, YAML), raised `from` the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class DevenvError(Exception):
    """Base of every error devenv shows to a person."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None, data: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.data = data or {}  # facts a client acts on (a host key's fingerprint to confirm), kept in the payload

    def render(self) -> str:
        """One or more lines for a terminal: the message, then the hint."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(DevenvError):
    """The command line itself is wrong (exit 2, like argparse)."""

    code = "usage"
    exit_code = 2


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file, located precisely enough for an editor to jump to."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class SpecInvalid(DevenvError):
    """A devenv.yaml (or an imported devcontainer.json) failed validation; carries every issue at once."""

    code = "spec_invalid"
    exit_code = 2

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = list(issues)
        count = len(self.issues)
        files = sorted({issue.file for issue in self.issues}) or ["spec"]
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in {', '.join(files)}")

    def render(self) -> str:
        return "\n".join(issue.render() for issue in self.issues)


class TemplateNotFound(DevenvError):
    code = "template_not_found"
    exit_code = 2


class FileExists(DevenvError):
    code = "file_exists"
    exit_code = 2


class LockError(DevenvError):
    """Pins could not be resolved (a package that does not exist, no wheel, resolver failure)."""

    code = "lock_failed"


class LockMissing(DevenvError):
    code = "lock_missing"


class LockMismatch(DevenvError):
    """The lock does not match the spec (or its requirement files); carries what differs."""

    code = "lock_mismatch"

    def __init__(self, differences: list[str], *, lock_path: str) -> None:
        self.differences = list(differences)
        lines = "\n".join(f"  - {d}" for d in self.differences)
        super().__init__(
            f"{lock_path} is out of date with the spec:\n{lines}",
            hint="run `devenv lock` to re-resolve, then commit devenv.lock",
        )


class BuildError(DevenvError):
    """An image build failed; the message carries the failing step's output."""

    code = "build_failed"


class BaseImageMissing(DevenvError):
    code = "base_image_missing"


class VerifyMismatch(DevenvError):
    """`devenv verify`: the image rebuilt from the lock is not the image in use; names the first layer that differs."""

    code = "verify_mismatch"


class BackendError(DevenvError):
    """Something went wrong talking to an engine (Docker, ssh, cloud)."""

    code = "backend_error"


class EngineUnreachable(BackendError):
    code = "engine_unreachable"


class ToolMissing(DevenvError):
    """An external program devenv needs (debootstrap, uv, hadolint) is not installed."""

    code = "tool_missing"


class WorkspaceNotFound(DevenvError):
    code = "workspace_not_found"


class SnapshotNotFound(DevenvError):
    code = "snapshot_not_found"


class WorkspaceBusy(DevenvError):
    """The workspace is in a state where the operation cannot run (e.g. exec on a stopped one)."""

    code = "workspace_state"


class PortInUse(BackendError):
    code = "port_in_use"


class MountSourceMissing(BackendError):
    """A folder the workspace mounts from the engine's host (a DVC directory remote) is not there."""

    code = "mount_source_missing"


class DaemonUnreachable(DevenvError):
    code = "daemon_unreachable"


class Unauthorized(DevenvError):
    code = "unauthorized"


class Unsupported(DevenvError):
    """The backend cannot do what was asked (a capability it lacks)."""

    code = "unsupported"
    exit_code = 2


def _subclasses(cls: type[DevenvError]) -> list[type[DevenvError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def error_from_payload(payload: dict[str, object]) -> DevenvError:
    """Rebuild the error a daemon answered (`{"code", "message", "hint", "issues"}`) as its own class.

    Codes round-trip: the daemon raises WorkspaceNotFound, the client raises WorkspaceNotFound.
    An unknown code (a newer daemon) becomes a plain DevenvError carrying the message.
    """
    code = str(payload.get("code") or "error")
    message = str(payload.get("message") or code)
    hint = payload.get("hint")
    hint_text = str(hint) if hint else None
    if code == SpecInvalid.code:
        raw_issues = payload.get("issues")
        listed = raw_issues if isinstance(raw_issues, list) else []
        issues = [SpecIssue(**issue) for issue in listed if isinstance(issue, dict)]
        return SpecInvalid(issues)
    by_code = {cls.code: cls for cls in _subclasses(DevenvError)}
    cls = by_code.get(code)
    if cls is None or cls is SpecInvalid or cls is LockMismatch:
        error = DevenvError(message, hint=hint_text)
        error.code = code  # type: ignore[misc]  # a ClassVar, set on this one instance: a newer daemon's code
        return error
    error = cls(message, hint=hint_text)
    data = payload.get("data")
    if isinstance(data, dict):
        error.data = data
    return error


def error_payload(error: DevenvError) -> dict[str, object]:
    """The JSON body the daemon answers for `error`."""
    payload: dict[str, object] = {"code": error.code, "message": error.message, "hint": error.hint}
    if error.data:
        payload["data"] = error.data
    if isinstance(error, SpecInvalid):
        payload["issues"] = [issue.__dict__ for issue in error.issues]
    return payload


class Forbidden(DevenvError):
    """The caller is known but has no right to this (not the owner, no grant)."""

    code = "forbidden"


class SecretNotFound(DevenvError):
    """No secret of that name in that scope (the caller's own, or the team's)."""

    code = "secret_not_found"


class SecretKeyError(DevenvError):
    """The daemon's secrets key file is unsafe, unreadable, or not the key the stored secrets were sealed with."""

    code = "secret_key"


class HostNotFound(DevenvError):
    code = "host_not_found"


class HostKeyUnknown(BackendError):
    """First contact with an SSH host whose key nobody confirmed: `data` holds its fingerprint to check."""

    code = "host_key_unknown"
    exit_code = 2


class HostKeyChanged(BackendError):
    """An SSH host answered with another key than the one pinned: a reinstall, or someone in between."""

    code = "host_key_changed"


class NoCapacity(BackendError):
    """No host (or cloud offer) has what the workspace asks for: free GPUs, a launchable instance."""

    code = "no_capacity"


class BodyTooLarge(UsageError):
    """A request body over the daemon's limit (DEVENV_MAX_BODY_BYTES), refused before it was read."""

    code = "body_too_large"


class HookFailed(DevenvError):
    """A lifecycle hook (hooks.create or hooks.start) exited non-zero: the workspace is failed, its container and
    home kept as they are, so the hook can be fixed and run again by the next start."""

    code = "hook_failed"
