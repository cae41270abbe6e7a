"""Load devenv.yaml into a Spec, reporting every problem at once with its line and column.

Why not just `yaml.safe_load` + `Spec.model_validate`: a person fixing a spec needs to know where
each problem is, and all of them in one go. So the text is composed into YAML nodes (which keep
their positions), checked for what pyyaml hides (duplicate keys, `3.10` read as 3.1), then
constructed and validated; each pydantic error location is walked back down the node tree to a
line and column. Anything malformed ends as `SpecInvalid`, never as a raw exception.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from devenv.confinement import PathOutside, project_path_problem, resolve_inside
from devenv.errors import SpecInvalid, SpecIssue
from devenv.requirements import requirement_problems
from devenv.spec.models import SPEC_FILENAME, Spec, type_name
from devenv.yamlsafe import YamlTooBig, check_node_budget, check_text_size, odd_scalars

Loc = tuple[str | int, ...]
Where = tuple[int, int | None] | None  # 1-based (line, column), or no particular place

_FLOAT_TAG = "tag:yaml.org,2002:float"
_SCALAR_TAGS = {"tag:yaml.org,2002:int", _FLOAT_TAG, "tag:yaml.org,2002:bool"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_VERSION_TEXT_RE = re.compile(r"\d+\.\d+")
_DEFAULT_REQUIREMENTS = "requirements.in"
_INIT_HINT = "run `devenv init --template minimal` to create one"

_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_EMPTY_HINTS = {"a list": "write [] for none", "a mapping": "remove the line to use the defaults"}


def load_spec(path: Path) -> Spec:
    """Read and validate a spec file (or the devenv.yaml inside a directory)."""
    if path.is_dir():
        path = path / SPEC_FILENAME
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _invalid(file, None, f"no spec file at {file}", _INIT_HINT) from None
    except UnicodeDecodeError as exc:
        raise _invalid(file, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise _invalid(file, None, f"cannot read {file}: {exc.strerror or exc}") from None
    return load_spec_text(text, file, path.parent)


def load_spec_text(text: str, file: str, base_dir: Path) -> Spec:
    """Validate spec text; `file` is used as given in issues, `base_dir` resolves requirement paths."""
    root, data, issues = _parse(text, file)
    locator = NodeLocator(root)
    issues.extend(_python_float(root, file))
    _keep_env_text(root, data)
    try:
        spec: Spec | None = Spec.model_validate(data)
    except ValidationError as exc:
        spec = None
        issues.extend(issues_from_validation_error(exc, file, locator))
    issues.extend(_missing_requirements(data, base_dir, file, locator))
    if spec is not None and not issues:  # the files are there and inside: what do they make the resolver read?
        issues.extend(_requirement_lines(spec, base_dir, file))
    if issues or spec is None:
        raise SpecInvalid(_sorted_unique(issues))
    return spec


def issue_at(text: str, file: str, loc: Loc, message: str, hint: str | None = None) -> SpecIssue:
    """An issue located at a field of valid spec text: for checks made outside the model (the daemon's policy)."""
    root, _, _ = _parse(text, file)
    return _issue(file, NodeLocator(root).position(loc), _dotted(loc), message, hint)


def issues_from_validation_error(
    exc: ValidationError, file: str, locator: NodeLocator | None = None
) -> list[SpecIssue]:
    """Short, located messages for every pydantic error (none of pydantic's own wall of text)."""
    return [_issue_for(error, file, locator) for error in exc.errors()]


# ---- parsing ----


def _parse(text: str, file: str) -> tuple[MappingNode, dict[str, Any], list[SpecIssue]]:
    """Compose, check duplicates, construct; raises SpecInvalid when there is nothing to validate."""
    issues: list[SpecIssue] = []
    loader: yaml.SafeLoader | None = None
    try:
        check_text_size(text)
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        check_node_budget(root)
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG and not root.value):
            raise _invalid(file, (1, None), "the spec is empty", _INIT_HINT)
        if not isinstance(root, MappingNode):
            got = "a list" if isinstance(root, SequenceNode) else "a single value"
            raise _invalid(file, _pos(root), f"expected a mapping of fields (name: ...), got {got}")
        issues.extend(_duplicate_keys(root, file))
        issues.extend(
            _issue(file, _pos(node), _printable(path), f"the value {why}", "write plain text")
            for path, node, why in odd_scalars(root)
        )
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else None
        kind = "YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax"
        message = f"{kind}: " + (", ".join(part for part in (exc.context, exc.problem) if part) or "invalid")
        raise SpecInvalid([*issues, _issue(file, where, "", message)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise _invalid(file, (line, column), f"unreadable character #x{exc.character:04x}") from None
    except yaml.YAMLError as exc:
        raise _invalid(file, None, f"YAML: {exc}") from None
    except RecursionError:
        raise _invalid(file, None, "the YAML is nested too deeply") from None
    except YamlTooBig as too_big:
        raise _invalid(
            file, None, f"the spec is refused: {too_big}", "a spec is a few KiB with few anchors; write the values out"
        ) from None
    except ValueError as exc:  # a number past Python's digit limit (int() refuses 4300+ digits)
        raise _invalid(file, None, f"YAML: a value cannot be read ({str(exc)[:80]})") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise _invalid(file, _pos(root), "expected a mapping of fields (name: ...)")
    return root, data, issues


def _duplicate_keys(root: Node, file: str) -> list[SpecIssue]:
    """pyyaml keeps the last of two equal keys without a word; a person almost never means that."""
    issues: list[SpecIssue] = []
    seen_nodes: set[int] = set()

    def visit(node: Node, path: str) -> None:
        if id(node) in seen_nodes:  # an alias, or an alias cycle
            return
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for key, value in node.value:
                if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                child = _join(path, key.value)
                if key.value in first:
                    message = f"duplicate field '{key.value}' (first at line {_pos(first[key.value])[0]})"
                    hint = "remove one; YAML would silently keep only the last"
                    issues.append(_issue(file, _pos(key), child, message, hint))
                first.setdefault(key.value, key)
                visit(value, child)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, f"{path}[{index}]")

    visit(root, "")
    return issues


def _python_float(root: MappingNode, file: str) -> list[SpecIssue]:
    """`python: 3.10` is the float 3.1 to YAML; only a number that reads back as written is accepted."""
    node = _child(root, "python")
    if not isinstance(node, ScalarNode) or node.tag != _FLOAT_TAG or node.style is not None:
        return []
    if not _VERSION_TEXT_RE.fullmatch(node.value) or str(float(node.value)) == node.value:
        return []
    message = f"{node.value} is read by YAML as the number {float(node.value)}, not the version {node.value}"
    return [_issue(file, _pos(node), "python", message, f'quote it: python: "{node.value}"')]


def _keep_env_text(root: MappingNode, data: dict[str, Any]) -> None:
    """Env values are strings: an unquoted 0123 or yes keeps the text written, not YAML's reading of it."""
    env_node, env = _child(root, "env"), data.get("env")
    if not isinstance(env_node, MappingNode) or not isinstance(env, dict):
        return
    for key, value in env_node.value:
        plain = isinstance(value, ScalarNode) and value.tag in _SCALAR_TAGS and value.style is None
        if plain and isinstance(key, ScalarNode) and key.value in env:
            env[key.value] = value.value


def _missing_requirements(data: dict[str, Any], base_dir: Path, file: str, locator: NodeLocator) -> list[SpecIssue]:
    """Each requirements file must exist beside the spec, the default one too, and stay inside its folder.

    Names the model refuses (absolute, `..`) are not looked at here: nothing outside the project is probed."""
    if "requirements" not in data:
        if _inside_exists(base_dir, _DEFAULT_REQUIREMENTS) is True:
            return []
        message = f"requirements file '{_DEFAULT_REQUIREMENTS}' (the default) not found beside the spec"
        hint = f"create {_DEFAULT_REQUIREMENTS}, or write `requirements: []`"
        return [_issue(file, None, "requirements", message, hint)]
    entries = data["requirements"]
    issues: list[SpecIssue] = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, str) or not entry.strip() or project_path_problem(entry) is not None:
            continue  # the model reports it
        found = _inside_exists(base_dir, entry)
        if found is True:
            continue
        if found is None:
            message = f"requirements file {entry!r} leads outside the project folder (a symlink)"
            hint = "copy the file into the project folder"
        else:
            what = "is a directory" if _exists(base_dir / entry, kind="dir") else "not found beside the spec"
            message, hint = f"requirements file {entry!r} {what}", "create it, or remove it from requirements"
        where = locator.position(("requirements", index))
        issues.append(_issue(file, where, f"requirements[{index}]", message, hint))
    return issues


def _requirement_lines(spec: Spec, base_dir: Path, file: str) -> list[SpecIssue]:
    """Lines of the requirement files that would make the resolver read outside the project (never quoted)."""
    hint = "a requirements file names packages, http(s) indexes and other files of the project only"
    return [
        _issue(
            str(Path(file).parent / problem.file),
            (problem.line, None) if problem.line else None,
            "",
            problem.message,
            hint,
        )
        for problem in requirement_problems(base_dir, list(spec.requirements))
    ]


def _inside_exists(base_dir: Path, relative: str) -> bool | None:
    """Whether base_dir/relative is a file; None when it resolves outside base_dir (never opened then)."""
    try:
        return _exists(resolve_inside(base_dir, relative))
    except PathOutside:
        return None
    except (OSError, ValueError, RuntimeError):  # a symlink loop, an odd name
        return False


def _exists(path: Path, kind: str = "file") -> bool:
    """Path.is_file (or is_dir), but an odd or unreadable path (NUL byte, EACCES) is simply not one."""
    try:
        return path.is_dir() if kind == "dir" else path.is_file()
    except (OSError, ValueError):
        return False


# ---- locating ----


class NodeLocator:
    """Walks a pydantic location down the YAML node tree to a key or value position."""

    def __init__(self, root: Node | None) -> None:
        self.root = root

    def walk(self, loc: Sequence[str | int]) -> tuple[Node | None, Node | None, str, bool]:
        """(key node, value node, dotted path, whether the whole loc was found)."""
        node, key, path = self.root, None, ""
        for depth, part in enumerate(loc):
            if isinstance(node, MappingNode):
                match = [(k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)]
                if match:
                    key, node = match[-1]  # the last of duplicates is the one YAML kept
                    path = _join(path, str(part))
                    continue
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                key, node = None, node.value[part]
                path = f"{path}[{part}]"
                continue
            return key, node, _dotted(loc[depth:], path), False
        return key, node, path, True

    def position(self, loc: Sequence[str | int], *, at_key: bool = False) -> Where:
        """Where the key or value at `loc` starts, or the deepest part of `loc` that exists."""
        key, value, _, found = self.walk(loc)
        node = key if (at_key and found and key is not None) else value
        return _pos(node) if node is not None else None


def _issue_for(error: ErrorDetails, file: str, locator: NodeLocator | None) -> SpecIssue:
    """One pydantic error as a SpecIssue located at the key, the value or the parent mapping."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    at_key = kind == "extra_forbidden"
    hint: str | None = None
    if loc and loc[-1] == "[key]":
        loc, at_key = loc[:-1], True
    if kind == "value_error":
        cause = (error.get("ctx") or {}).get("error")
        loc = loc + tuple(getattr(cause, "sub", ()))
        message, hint = str(cause), getattr(cause, "hint", None)
    elif kind == "missing":
        message = f"missing required field '{loc[-1]}'"
    elif kind == "extra_forbidden":
        message, hint = f"unknown field '{loc[-1]}'", _did_you_mean(loc)
    elif kind in _EXPECTED:
        value = error["input"]
        message = f"expected {_EXPECTED[kind]}, got {type_name(value)}"
        if kind == "string_type" and isinstance(value, int | float):
            hint = f'quote it: "{_raw_text(locator, loc, at_key) or value}"'
        elif value is None:
            hint = _EMPTY_HINTS.get(_EXPECTED[kind])
    else:
        message = error["msg"].removeprefix("Input ")
    where = loc[:-1] if kind == "missing" else loc
    if locator is None:
        return _issue(file, None, _dotted(loc), message, hint)
    _, _, path, _ = locator.walk(where)
    field = _join(path, str(loc[-1])) if kind == "missing" else path
    return _issue(file, locator.position(where, at_key=at_key), field, message, hint)


def _did_you_mean(loc: Loc) -> str | None:
    """A close field name of the model that owns the unknown key, at whatever depth it is."""
    model = _model_at(loc[:-1])
    if model is None:
        return None
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]).lower(), names, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "known fields: " + ", ".join(names)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class validating the mapping at `loc`, by walking Spec's field annotations."""
    current: Any = Spec
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) is list and args else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """X for Annotated[X, ...] and X | None."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _unwrap(members[0]) if len(members) == 1 else annotation
    return annotation


# ---- small helpers ----


def _raw_text(locator: NodeLocator | None, loc: Loc, at_key: bool) -> str | None:
    """The scalar text as written in the file (a YAML number's own spelling, like 1.10)."""
    if locator is None:
        return None
    key, value, _, found = locator.walk(loc)
    node = key if at_key else value
    return node.value if found and isinstance(node, ScalarNode) else None


def _child(mapping: MappingNode, name: str) -> Node | None:
    found = [value for key, value in mapping.value if isinstance(key, ScalarNode) and key.value == name]
    return found[-1] if found else None


def _pos(node: Node) -> tuple[int, int]:
    """1-based line and column of a node's start (pyyaml marks are 0-based)."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def _printable(path: str) -> str:
    """A field path as a message can show it (keys may hold anything)."""
    return path.encode("unicode_escape").decode("ascii") if not path.isprintable() else path


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _dotted(parts: Sequence[str | int], prefix: str = "") -> str:
    """('resources', 'gpu') -> resources.gpu; ('requirements', 1) -> requirements[1]."""
    path = prefix
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path


def _issue(file: str, where: Where, field: str, message: str, hint: str | None = None) -> SpecIssue:
    line, column = where if where is not None else (None, None)
    return SpecIssue(file=file, line=line, column=column, field=field, message=message, hint=hint)


def _invalid(file: str, where: Where, message: str, hint: str | None = None) -> SpecInvalid:
    """A SpecInvalid holding one file-level issue."""
    return SpecInvalid([_issue(file, where, "", message, hint)])


def _sorted_unique(issues: list[SpecIssue]) -> list[SpecIssue]:
    """Issues in file order (unlocated last), each once."""
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.line is None, i.line or 0, i.column or 0))
