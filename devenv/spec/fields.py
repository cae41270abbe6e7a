"""The value types of devenv.yaml's fields: validators that accept the human forms ("A100:2", "30m",
"16Gi") and say what is wrong with a hint. models.py assembles them into the Spec."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from typing import Annotated

from pydantic import BeforeValidator

from devenv.confinement import name_problem, project_path_problem
from devenv.spec.units import GpuRequest, parse_duration, parse_gpu, parse_size

# matched with fullmatch everywhere: `$` would let a trailing newline through
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PYTHON_RE = re.compile(r"[0-9]+\.[0-9]+")
_APT_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SECRET_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FOLDER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOOK_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,62}")
MAX_CPU = 4096.0


class SpecValueError(ValueError):
    """A validation failure that carries a hint, and optionally a deeper location (`sub`) than its field.

    The loader reads both back out of pydantic's error context; plain pydantic users still get the message.
    """

    def __init__(self, message: str, *, hint: str | None = None, sub: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.hint = hint
        self.sub = sub


def slugify(text: str) -> str:
    """A valid spec name from free text ("My Project" -> "my-project"); empty when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:63].rstrip("-")


def type_name(value: object) -> str:
    """How a YAML user would call a value's type."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string" if isinstance(value, str) else type(value).__name__


# ---- field validators (before: they see raw YAML values) ----


def valid_name(value: str) -> bool:
    """A workspace name: lowercase letters, digits and '-', at most 63, starting with a letter or digit."""
    return _NAME_RE.fullmatch(value) is not None


def name_hint(value: str) -> str:
    """What a workspace name may be, and a suggestion made from `value` when one can be."""
    suggestion = slugify(value)
    hint = "lowercase letters, digits and '-', at most 63, starting with a letter or digit"
    return hint + "; it becomes the Docker image name" + (f"; try {suggestion!r}" if suggestion else "")


def _name(value: object) -> object:
    if isinstance(value, str) and not valid_name(value):
        raise SpecValueError(f"{value!r} is not a valid name", hint=name_hint(value))
    return value


def _python(value: object) -> object:
    """MAJOR.MINOR as a string; an unquoted YAML float is fine only when it reads back the same."""
    if isinstance(value, int):  # bools too
        raise SpecValueError(f'expected MAJOR.MINOR like "3.11", got {value!r}', hint='quote it: "3.11"')
    if isinstance(value, float):
        text = str(value)  # the shortest text that reads back as this float
        if not _PYTHON_RE.fullmatch(text):
            raise SpecValueError(f'expected MAJOR.MINOR like "3.11", got {value!r}', hint='quote it: "3.11"')
        return text
    if isinstance(value, str) and not _PYTHON_RE.fullmatch(value.strip()):
        raise SpecValueError(f'expected MAJOR.MINOR like "3.11", got {value!r}')
    return value.strip() if isinstance(value, str) else value


def _apt(value: object) -> object:
    if isinstance(value, str) and not _APT_RE.fullmatch(value):
        raise SpecValueError(
            f"{value!r} is not a Debian package name",
            hint="lowercase letters, digits, '+', '-', '.'; versions are pinned in devenv.lock",
        )
    return value


def _secret(value: object) -> object:
    if isinstance(value, str):
        if "=" in value or ":" in value:
            shown = re.split(r"[=:]", value, maxsplit=1)[0].strip()
            raise SpecValueError(
                f"secret entry '{shown}=…' looks like it holds a value",
                hint="list only secret names; set values with `devenv secret set NAME`",
            )
        if not _SECRET_RE.fullmatch(value):
            raise SpecValueError(
                f"{value!r} is not a secret name",
                hint="use env-var style: A-Z, 0-9 and '_', like WANDB_API_KEY",
            )
    return value


def _repo_path(value: object) -> object:
    if isinstance(value, str) and not _FOLDER_RE.fullmatch(value):
        raise SpecValueError(f"{value!r} is not a folder name", hint="one folder under the home, like 'project'")
    return value


def _port(value: object) -> object:
    if isinstance(value, bool) or (isinstance(value, int) and not 1 <= value <= 65535):
        raise SpecValueError(f"port must be a number from 1 to 65535, got {value!r}")
    return value


def _env_key(value: object) -> object:
    if isinstance(value, str) and not _ENV_KEY_RE.fullmatch(value):
        raise SpecValueError(f"{value!r} is not an environment variable name", hint="use letters, digits and '_'")
    return value


def _env_value(value: object) -> object:
    """Numbers and booleans become their text: an env var is always a string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        raise SpecValueError("empty value", hint='write "" for an empty string')
    return value


def _gpu(value: object) -> object:
    if value is None or isinstance(value, dict | GpuRequest):
        return value
    if isinstance(value, str | int):
        return parse_gpu(value)
    raise SpecValueError(f'expected a GPU request like "A100:2" or 2, got {type_name(value)}')


def _cpu(value: object) -> object:
    number = value
    if isinstance(value, str):  # pydantic reads "1e400" as inf: judged as the number it becomes
        try:
            number = float(value)
        except ValueError:
            return value
    if isinstance(number, bool) or (isinstance(number, int | float) and not 0 < number <= MAX_CPU):  # nan, inf
        raise SpecValueError(f"cpu must be a number more than 0 and at most {MAX_CPU:g}, got {value!r:.40}")
    return value


def _size(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, str | int):
        return parse_size(value)
    raise SpecValueError(f'expected a size like "16Gi", got {type_name(value)}')


def _autostop(value: object) -> object:
    """ "off", null and YAML's `off`/`false` (read as False) all disable autostop."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("off", "never")):
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise SpecValueError(str(exc), hint='write "off" to disable autostop') from None
    raise SpecValueError(f'expected a duration like "30m" or "off", got {type_name(value)}')


def _entrypoint(value: object) -> object:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise SpecValueError(f"cannot split entrypoint: {exc}", hint="write it as a list") from None
    return value


def _nonempty(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise SpecValueError("must not be empty")
    return value


def _project_file(value: object) -> object:
    """A file of the project: relative to the spec's folder and inside it (the daemon opens nothing else)."""
    if isinstance(value, str) and (problem := project_path_problem(value)) is not None:
        raise SpecValueError(f"{value!r} {problem}", hint="name a file in the project folder, relative to devenv.yaml")
    return value


def _host_path(value: object) -> object:
    """A folder on the engine's host, by its own plain path (the daemon checks that its admin allows it)."""
    if isinstance(value, str) and value.startswith("/"):
        problem = name_problem(value) or ("must not contain '..'" if ".." in value.split("/") else None)
        if problem is not None:
            raise SpecValueError(f"the folder {problem}", hint="write the folder's own absolute path")
    return value


ULIMIT_NAMES = ("core", "memlock", "nofile", "nproc", "stack")


def _ulimit_name(value: object) -> object:
    if isinstance(value, str) and value not in ULIMIT_NAMES:
        raise SpecValueError(f"{value!r} is not a limit devenv sets", hint=f"one of: {', '.join(ULIMIT_NAMES)}")
    return value


def _ulimit(value: object) -> object:
    """A number, -1 or "unlimited" for no limit; bools and text are refused."""
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise SpecValueError(f'expected a number, -1 or "unlimited", got {value!r:.40}')
    return value


def _hook_step(value: object) -> object:
    """A shell line, a mapping of names to shell lines (run in parallel), or `{background: LINE}` (a server,
    started detached and not waited for)."""
    if isinstance(value, str):
        return _nonempty(value)
    if isinstance(value, dict):
        if not value:
            raise SpecValueError("a parallel group needs at least one command")
        if "background" in value:
            if len(value) != 1:
                raise SpecValueError(
                    "a background step is a mapping with the single key `background`",
                    hint='write `- background: "streamlit run app.py"` as a step of its own',
                )
            if not isinstance(value["background"], str) or not value["background"].strip():
                raise SpecValueError("`background` must be a non-empty shell line", sub=("background",))
            return value
        for key, item in value.items():
            if not isinstance(key, str) or not _HOOK_NAME_RE.fullmatch(key):
                raise SpecValueError(f"{key!r} is not a command name", hint="letters, digits, '.', '_' and '-'")
            if not isinstance(item, str) or not item.strip():
                raise SpecValueError(f"command {key!r} must be a non-empty shell line", sub=(key,))
        return value
    raise SpecValueError(f"expected a shell line or a mapping of names to shell lines, got {type_name(value)}")


def _create_hook_step(value: object) -> object:
    """As a start step, but never in the background: create steps run once per home, a server would not come back."""
    if isinstance(value, dict) and "background" in value:
        raise SpecValueError(
            "a background step runs only in hooks.start (create steps run once per home: the "
            "server would not come back at the next start)",
            hint="move the step to hooks.start",
        )
    return _hook_step(value)


def _optional_duration(value: object, *, example: str, hint: str) -> object:
    """A duration, or None for null (the field's default applies)."""
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise SpecValueError(str(exc), hint=hint) from None
    raise SpecValueError(f'expected a duration like "{example}", got {type_name(value)}', hint=hint)


def _hook_timeout(value: object) -> object:
    """The limit of each hook step: a duration; null keeps the defaults (30m a create step, 10m a start step)."""
    return _optional_duration(value, example="20m", hint=_SERVER_HINT)


_SERVER_HINT = "a server that must not end belongs in `- background: LINE` under hooks.start"


def _time_limit(value: object) -> object:
    """A batch cluster's time limit for each run of the workspace; null leaves the cluster's default."""
    return _optional_duration(value, example="8h", hint=_TIME_HINT)


_TIME_HINT = 'write how long one run may last, like "8h" or "2d"; omit it for the cluster\'s default'


def as_of_day(value: object) -> str | None:
    """A day, YYYY-MM-DD (YAML reads an unquoted one as a date): PyPI as it stood at that day's end, UTC."""
    hint = 'write the day as YYYY-MM-DD, like "2023-09-30"; omit the field to resolve against today\'s index'
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise SpecValueError(f"{value!r} is not a day", hint=hint) from None
    if not isinstance(value, dt.date):
        raise SpecValueError(f"expected a day like 2023-09-30, got {type_name(value)}", hint=hint)
    if value > dt.datetime.now(dt.UTC).date():
        raise SpecValueError(f"{value.isoformat()} is in the future", hint=hint)
    if value < dt.date(2005, 1, 1):
        raise SpecValueError(f"{value.isoformat()} is before PyPI kept upload times", hint=hint)
    return value.isoformat()


Name = Annotated[str, BeforeValidator(_name)]
Python = Annotated[str, BeforeValidator(_python, json_schema_input_type=str | float)]
AptPackage = Annotated[str, BeforeValidator(_apt)]
SecretName = Annotated[str, BeforeValidator(_secret)]
Port = Annotated[int, BeforeValidator(_port)]
RepoPath = Annotated[str, BeforeValidator(_repo_path)]
EnvKey = Annotated[str, BeforeValidator(_env_key)]
EnvValue = Annotated[str, BeforeValidator(_env_value, json_schema_input_type=str | int | float | bool)]
NonEmpty = Annotated[str, BeforeValidator(_nonempty)]
ProjectFile = Annotated[str, BeforeValidator(_project_file), BeforeValidator(_nonempty)]
HostPathOrUrl = Annotated[str, BeforeValidator(_host_path), BeforeValidator(_nonempty)]
Size = Annotated[int | None, BeforeValidator(_size, json_schema_input_type=str | int | None)]
Gpu = Annotated[GpuRequest | None, BeforeValidator(_gpu, json_schema_input_type=str | int | None)]
Cpu = Annotated[float | None, BeforeValidator(_cpu)]
Autostop = Annotated[int | None, BeforeValidator(_autostop, json_schema_input_type=str | int | None)]
Entrypoint = Annotated[list[str], BeforeValidator(_entrypoint, json_schema_input_type=str | list[str])]
UlimitName = Annotated[str, BeforeValidator(_ulimit_name)]
Ulimit = Annotated[int, BeforeValidator(_ulimit, json_schema_input_type=int | str)]
HookStep = Annotated[str | dict[str, str], BeforeValidator(_hook_step)]
CreateHookStep = Annotated[str | dict[str, str], BeforeValidator(_create_hook_step)]
HookTimeout = Annotated[int | None, BeforeValidator(_hook_timeout, json_schema_input_type=str | int | None)]
TimeLimit = Annotated[int | None, BeforeValidator(_time_limit, json_schema_input_type=str | int | None)]
AsOf = Annotated[str | None, BeforeValidator(as_of_day, json_schema_input_type=str | None)]
