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


def _load_yaml(text: str) -> Any:
    import yaml  # not at import time: `devenv ls` imports this module and never needs YAML

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None  # the daemon reports the YAML error with its line


def collect_project(spec: Path) -> dict[str, Any]:
    """The files the daemon needs to build (spec, lock, requirement files), read from the project folder."""
    if not spec.is_file():
        raise UsageError(f"no spec at {spec}", hint="run `devenv init --template minimal` to make one, or pass "
                                                     "-f PATH")
    text = spec.read_text()
    files = {spec.name: text}
    folder = spec.parent
    loaded = _load_yaml(text)
    requirements = ["requirements.in"]
    if isinstance(loaded, dict) and isinstance(loaded.get("requirements"), list):
        requirements = [str(item) for item in loaded["requirements"]]
    for name in requirements:
        path = folder / name
        if path.is_file() and ".." not in Path(name).parts:
            files[name] = path.read_text()
        elif not path.exists():
            raise SpecInvalid([SpecIssue(str(spec), None, None, "requirements",
                                         f"{name}: no such file next to the spec")])
    lock = folder / LOCK_FILENAME
    if lock.is_file():
        files[LOCK_FILENAME] = lock.read_text()
    return {"spec_path": str(spec), "files": files}


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
    loaded = _load_yaml(project["files"].get(Path(project["spec_path"]).name, ""))
    return loaded if isinstance(loaded, dict) else {}


def with_fields(project: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The project with top-level spec fields set; `gpu`, `cpu` and `memory` go under `resources`.

    None removes a field. Values are checked by the daemon like any spec, so a bad one comes back as
    SpecInvalid naming its field. When nothing changes, the spec is sent as the person wrote it, so an
    error's line numbers are theirs; a spec that is not YAML is left as it is for the daemon to report.
    """
    spec_name = Path(project["spec_path"]).name
    loaded = _load_yaml(project["files"][spec_name])
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
