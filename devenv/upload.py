"""The project a client sends the daemon: the spec, its requirement files and the lock, as text.

The daemon may run on another machine than the person's project folder, so clients (the CLI's
`devenv up`, the TUI's launch wizard) send these few files; the daemon validates them. A wizard
launch starts from a shipped template and sets a few fields (name, backend, resources, autostop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devenv.errors import SpecInvalid, SpecIssue, TemplateNotFound, UsageError
from devenv.resources import templates_dir

SPEC_FILENAME = "devenv.yaml"
LOCK_FILENAME = "devenv.lock"
RESOURCE_FIELDS = ("gpu", "cpu", "memory")


def _load_yaml(text: str, file: str = SPEC_FILENAME) -> Any:
    """The spec's values; None when it is not YAML (the daemon reports that with its line). A document
    too big or with an alias bomb is refused here, at once: walking it would take gigabytes."""
    import yaml  # not at import time: `devenv ls` imports this module and never needs YAML

    from devenv.yamlsafe import YamlTooBig, load_limited

    try:
        return load_limited(text)
    except YamlTooBig as too_big:
        raise SpecInvalid(
            [
                SpecIssue(
                    file,
                    None,
                    None,
                    "",
                    f"the spec is refused: {too_big}",
                    "a spec is a few KiB with few anchors; write the values out",
                )
            ]
        ) from None
    except (yaml.YAMLError, ValueError):
        return None


def _refuse(spec: Path, text: str, index: int | None, message: str, hint: str) -> SpecInvalid:
    """A SpecInvalid at requirements[index]'s line (None: the default requirements file, on no line)."""
    from devenv.yamlsafe import item_position

    where = item_position(text, "requirements", index) if index is not None else None
    line, column = where if where is not None else (None, None)
    field = "requirements" if index is None else f"requirements[{index}]"
    return SpecInvalid([SpecIssue(str(spec), line, column, field, message, hint)])


def _read(path: Path, spec: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or str(exc))
        raise SpecInvalid([SpecIssue(str(spec), None, None, "", f"cannot send {path.name}: {reason}")]) from None


def collect_project(spec: Path) -> dict[str, Any]:
    """The files the daemon needs to build (spec, lock, requirement files), read from the project folder.

    Only files inside the folder are sent: a name that is absolute, climbs with `..` or leads out through a
    symlink is refused here, before anything is uploaded."""
    from devenv.confinement import PathOutside, project_path_problem, resolve_inside

    if not spec.is_file():
        raise UsageError(f"no spec at {spec}", hint="run `devenv init --template minimal` to make one, or pass -f PATH")
    text = _read(spec, spec)
    files = {spec.name: text}
    folder = spec.parent
    loaded = _load_yaml(text, str(spec))
    requirements: list[Any] = ["requirements.in"]
    written = isinstance(loaded, dict) and isinstance(loaded.get("requirements"), list)
    if written:
        requirements = loaded["requirements"]
    hint = "name a file inside the project folder, relative to devenv.yaml"
    for index, name in enumerate(requirements):
        if not isinstance(name, str) or not name.strip():
            continue  # the daemon names the type error
        loc = index if written else None
        problem = project_path_problem(name)
        if problem is not None:
            raise _refuse(spec, text, loc, f"{name!r} {problem}; nothing was sent", hint)
        try:
            path = resolve_inside(folder, name)
        except PathOutside:
            raise _refuse(
                spec,
                text,
                loc,
                f"{name!r} leads outside the project folder (a symlink); nothing was sent",
                "copy the file into the project folder",
            ) from None
        if path.is_file():
            files[name] = _read(path, spec)
            _add_included(folder, name, files, spec)
        elif not path.exists():
            raise _refuse(spec, text, loc, f"{name}: no such file next to the spec", "create it, or remove it")
    lock = folder / LOCK_FILENAME
    if lock.is_file():
        try:
            files[LOCK_FILENAME] = _read(resolve_inside(folder, LOCK_FILENAME), spec)
        except PathOutside:
            raise SpecInvalid(
                [
                    SpecIssue(
                        str(lock),
                        None,
                        None,
                        "",
                        "leads outside the project folder (a symlink); nothing was sent",
                        "copy the lock into the folder",
                    )
                ]
            ) from None
    return {"spec_path": str(spec), "files": files}


def _add_included(folder: Path, name: str, files: dict[str, str], spec: Path) -> None:
    """The files `name` includes (`-r common.txt`), and theirs, sent too: the daemon resolves them all. One that
    is missing or leads out is not sent, and the daemon's check names it with its line."""
    from devenv.confinement import PathOutside, resolve_inside
    from devenv.requirements import MAX_INCLUDED, included_files

    queue = included_files(name, files[name])
    while queue and len(files) <= MAX_INCLUDED:
        included = queue.pop(0)
        if included in files:
            continue
        try:
            path = resolve_inside(folder, included)
        except PathOutside:
            continue
        if path.is_file():
            files[included] = _read(path, spec)
            queue.extend(included_files(included, files[included]))


def template_names() -> list[str]:
    return sorted(path.parent.name for path in templates_dir().glob(f"*/{SPEC_FILENAME}"))


def template_project(template: str) -> dict[str, Any]:
    """A shipped template as an upload (no lock: the daemon resolves one on the first start)."""
    spec = templates_dir() / template / SPEC_FILENAME
    if template not in template_names():
        raise TemplateNotFound(f"no template named {template!r}", hint=f"choose one of: {', '.join(template_names())}")
    project = collect_project(spec)
    project["spec_path"] = f"{template}/{SPEC_FILENAME}"
    return project


def spec_fields(project: dict[str, Any]) -> dict[str, Any]:
    """The spec's top-level mapping as written (empty when it does not parse): for a form's defaults."""
    loaded = _load_yaml(project["files"].get(Path(project["spec_path"]).name, ""), project["spec_path"])
    return loaded if isinstance(loaded, dict) else {}


def with_fields(project: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The project with top-level spec fields set; `gpu`, `cpu` and `memory` go under `resources`.

    None removes a field. Values are checked by the daemon like any spec, so a bad one comes back as
    SpecInvalid naming its field. When nothing changes, the spec is sent as the person wrote it, so an
    error's line numbers are theirs; a spec that is not YAML is left as it is for the daemon to report.
    """
    spec_name = Path(project["spec_path"]).name
    loaded = _load_yaml(project["files"][spec_name], project["spec_path"])
    if not isinstance(loaded, dict):
        return project
    resources = loaded.get("resources")
    resources = dict(resources) if isinstance(resources, dict) else {}
    changed = False
    for key, value in fields.items():
        target = resources if key in RESOURCE_FIELDS else loaded
        if target.get(key) == value and (value is not None or key not in target):
            continue
        changed = True
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    if not changed:
        return project
    if resources:
        loaded["resources"] = resources
    else:
        loaded.pop("resources", None)
    import yaml

    text = yaml.safe_dump(loaded, sort_keys=False, default_flow_style=False)
    return {**project, "files": {**project["files"], spec_name: text}}
