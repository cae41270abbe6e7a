"""The devcontainer import's last pass over the commands it took, so that they run in a devenv workspace.

Three things a Dev Containers setup assumes and a devenv image does not have:
- the user `vscode` (home /home/vscode): devenv's user is `dev`, home /home/dev, so `chown -R vscode:vscode
  /home/vscode/.cache` fails the build; the name is rewritten to dev, with a warning;
- the paths a Dockerfile's COPY/ADD wrote (`COPY --from=upstream /opt/conda /opt/conda`): devenv does not carry
  COPY/ADD over, so a RUN line that names such a path (`chmod =2775 /opt/conda`) fails; the rule: a RUN line that
  names a path a COPY/ADD of the same Dockerfile wrote to (an absolute destination, or a path under it) is not
  imported, and the warning says which COPY;
- Ubuntu's apt names that Debian bookworm lacks (bookworm.py's table).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from devenv.spec.bookworm import bookworm_name
from devenv.spec.devcontainer_runargs import Draft

# `vscode` as a user name (vscode:vscode, -u vscode, "vscode") and /home/vscode; not .vscode, ms-vscode, vscode-server
_VSCODE = re.compile(r"(?<![\w.$/-])vscode(?![\w./-])|(?<=/home/)vscode(?![\w.-])")
_COPY = re.compile(r"(?i)(COPY|ADD)\s+(.+)")


def marks(draft: Draft) -> tuple[int, int, int]:
    """Where the draft's setup, create hooks and warnings stand before a Dockerfile is read."""
    return len(draft.setup), len(draft.create), len(draft.warnings)


def copied_paths(text: str) -> dict[str, str]:
    """The absolute paths a Dockerfile's COPY/ADD instructions write to -> the instruction (shown in the warning)."""
    paths: dict[str, str] = {}
    for instruction in re.sub(r"\\[ \t]*\r?\n", " ", text).splitlines():
        match = _COPY.fullmatch(instruction.strip())
        if match is None:
            continue
        try:
            words = [word for word in shlex.split(match[2]) if not word.startswith("--")]
        except ValueError:
            continue
        destination = words[-1].rstrip("/") if len(words) >= 2 else ""
        if destination.startswith("/") and "$" not in destination:
            paths.setdefault(destination, instruction.strip())
    return paths


def drop_copied(text: str, origin: str, draft: Draft, before: tuple[int, int, int]) -> None:
    """The Dockerfile's RUN lines (taken since `before`) that use a path its COPY/ADD wrote leave setup: and hooks."""
    paths = copied_paths(text)
    if not paths:
        return
    setup_from, create_from, warned_from = before
    dropped: list[str] = []
    for steps, start in ((draft.setup, setup_from), (draft.create, create_from)):
        for step in list(steps[start:]):
            path = next((p for p in paths if isinstance(step, str) and _names(step, p)), None)
            if path is None or not isinstance(step, str):
                continue
            steps.remove(step)
            dropped.append(step)
            draft.warn(
                f"{origin} RUN {step!r} not imported: it uses {path}, which `{paths[path][:80]}` wrote; devenv "
                "does not carry COPY/ADD over, so the path is not in the workspace image (the step would fail)"
            )
    said = tuple(f"{origin} RUN {step!r} -> " for step in dropped)
    draft.warnings[warned_from:] = [w for w in draft.warnings[warned_from:] if not (said and w.startswith(said))]


def _names(line: str, path: str) -> bool:
    return re.search(rf"(?<![\w./-]){re.escape(path)}(?![\w.-])", line) is not None


def _dev(text: str) -> str:
    return _VSCODE.sub("dev", text)


def _with_env(step: str, env: dict[str, str]) -> str:
    """`step` with `export NAME=VALUE && ` in front for each env NAME it expands (a literal VALUE only)."""
    used = [name for name in env if re.search(rf"\$\{{?{re.escape(name)}\b", step) and "$" not in env[name]]
    if not used:
        return step
    return "export " + " ".join(f"{name}={shlex.quote(env[name])}" for name in used) + " && " + step


def adapt(data: dict[str, Any], warnings: list[str]) -> None:
    """The imported spec data with vscode -> dev in its commands and env, and bookworm's apt names."""
    changed: list[str] = []
    if setup := data.get("setup"):
        data["setup"] = [_dev(line) for line in setup]
        changed += ["setup"] if data["setup"] != setup else []
    for stage, steps in data.get("hooks", {}).items():
        new = [_dev(s) if isinstance(s, str) else {k: _dev(v) for k, v in s.items()} for s in steps]
        changed += [f"hooks.{stage}"] if new != steps else []
        data["hooks"][stage] = new
    if env := data.get("env"):
        data["env"] = {key: _dev(value) for key, value in env.items()}
        changed += ["env"] if data["env"] != env else []
    if (setup := data.get("setup")) and (env := data.get("env")):
        data["setup"] = [_with_env(step, env) for step in setup]
        if data["setup"] != setup:
            warnings.append(
                "setup: the ENV values its steps use are set in those steps (env: reaches the running workspace, "
                "not the image build, where a Dockerfile's ENV reached its RUN lines)"
            )
    if changed:
        warnings.append(
            f"{', '.join(changed)}: the Dev Containers user vscode became dev (/home/vscode became "
            "/home/dev): workspaces run as dev, whose home is /home/dev"
        )
    apt: list[str] = []
    for package in data.get("apt", []):
        name, why = bookworm_name(package)
        if why:
            warnings.append(f"apt {package} imported as {name} ({why})")
        if name not in apt:
            apt.append(name)
    if apt:
        data["apt"] = apt
