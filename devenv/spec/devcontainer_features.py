"""What a Dev Container builds its image from (`image`, a Dockerfile, Features), read for what it means:
devenv builds from its pinned bases, so an image says CUDA or not and which Python, a Feature what it
installs, and a RUN line where it can run: apt installs -> apt:, pip installs -> the locked requirements,
the rest -> setup: (build time, no network) or, when it needs the network, hooks.create."""

from __future__ import annotations

import functools
import json
import re
import shlex
from typing import Any

import yaml

from devenv.resources import images_dir
from devenv.spec.devcontainer_runargs import Draft
from devenv.spec.fields import _APT_RE

_FALLBACK_PYTHON, _FALLBACK_CUDA = {"cpu": "3.11", "cuda": "3.12"}, (12, 6)  # when images/ cannot be read
_PY_TAG_RE = re.compile(r"(?:^|[-:_])(?:py)?(3\.[0-9]{1,2})(?:$|[-.:_a-z])")
_EXEC_FORM_RE = re.compile(r'\[\s*"(?:[^"\\]|\\.)*"(?:\s*,\s*"(?:[^"\\]|\\.)*")*\s*\]')
_VERSION_RE = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})")
_NETWORK_RE = re.compile(
    r"(?:^|[\s;&|(`'\"])(?:curl|wget|add-apt-repository|huggingface-cli|gsutil|aws|scp|ssh|rsync|yarn)(?![\w.-])"
    r"|\bgit\s+(?:clone|fetch|pull|submodule|ls-remote)\b|\b(?:npm|pnpm)\s+(?:install|i|ci|add)\b"
    r"|\b(?:cargo|go|gem|pipx)\s+(?:install|get)\b|\b(?:pip3?|uv\s+pip|-m\s+pip)\s+(?:install|download)\b"
    r"|\buv\s+(?:sync|add|tool\s+install)\b|\b(?:conda|mamba|micromamba)\s+(?:install|create|update|env)\b"
    r"|\bpoetry\s+(?:install|add|update)\b|\bapt(?:-get)?\s+(?:\S+\s+)*?(?:update|install|upgrade)\b|://"
)
_CONDA = (
    "devenv installs Python packages with pip/uv from the locked requirements, not conda; "
    "list the packages in requirements.in"
)
_PIP_PREFIXES = (
    ["pip", "install"],
    ["pip3", "install"],
    ["uv", "pip", "install"],
    ["python", "-m", "pip", "install"],
    ["python3", "-m", "pip", "install"],
)
_FEATURE_APT = {"git": ["git"], "node": ["nodejs", "npm"], "github-cli": ["gh"], "git-lfs": ["git-lfs"]}


@functools.lru_cache(maxsize=4)
def _recipe(name: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load((images_dir() / name / "recipe.yaml").read_text())
    except (OSError, yaml.YAMLError):
        data = None
    return data if isinstance(data, dict) else {}


def base_python(base: str) -> str:
    """The one Python version the base image provides (the lock refuses any other)."""
    return str(_recipe(base).get("python") or _FALLBACK_PYTHON[base])


def cuda_base_version() -> tuple[int, int]:
    """MAJOR.MINOR of the CUDA runtime in the cuda base, read from its pinned upstream tag."""
    match = re.search(r"nvidia/cuda:([0-9]+)\.([0-9]+)", str(_recipe("cuda").get("upstream", "")))
    return (int(match.group(1)), int(match.group(2))) if match else _FALLBACK_CUDA


def check_cuda(version: str | None, origin: str, draft: Draft) -> None:
    """Say whether the CUDA version asked for can be met by the cuda base's runtime."""
    base, have = cuda_base_version(), "{}.{}".format(*cuda_base_version())
    match = _VERSION_RE.search(version or "")
    if match is None:
        draft.warn(f"{origin}: the CUDA {have} runtime (no CUDA version given to check)")
        return
    asked, shown = (int(match.group(1)), int(match.group(2))), f"{int(match.group(1))}.{int(match.group(2))}"
    if asked > base:
        draft.warn(
            f"{origin}: CUDA {shown} cannot be met: the cuda base has the CUDA {have} runtime, which is "
            f"used instead; code built for {shown} may not load on it"
        )
    elif asked[0] == base[0]:
        draft.warn(f"{origin}: CUDA {shown} code runs on the base's CUDA {have} runtime")
    else:
        draft.warn(
            f"{origin}: CUDA {shown} is not the cuda base's: it has CUDA {have}; system libraries built "
            f"for CUDA {asked[0]} will not load (pip wheels that bundle their CUDA, like torch's, still run)"
        )


def _split_image(image: str) -> tuple[str, str]:
    """(repository without docker.io/library, tag) of an image reference."""
    name = image.strip().split("@", 1)[0]
    repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    repo = repo.lower().removeprefix("docker.io/").removeprefix("index.docker.io/").removeprefix("library/")
    return repo, tag.lower()


def image(value: object, origin: str, draft: Draft) -> None:
    """An image name read for what it means: the cuda base and its CUDA version, a Python version."""
    if not isinstance(value, str):
        draft.warn(f"{origin} not imported: expected an image name")
        return
    repo, tag = _split_image(value)
    last = repo.rsplit("/", 1)[-1]
    said = f"{origin} {value!r} is not used (devenv builds from its pinned bases)"
    if repo.endswith("nvidia/cuda"):
        draft.base = "cuda"
        check_cuda(tag, f"{origin} {value!r} -> base: cuda", draft)
        if "devel" in tag or "cudnn" in tag:
            draft.warn(
                f"{origin} {value!r}: the cuda base is the runtime image: no nvcc or headers, and cuDNN "
                "comes from pip (nvidia-cudnn-cu12, which torch pulls in)"
            )
    elif repo == "pytorch/pytorch" or (repo.startswith("nvcr.io/nvidia/") and last in ("pytorch", "tensorflow")):
        version = re.match(r"[0-9]+\.[0-9]+(?:\.[0-9]+)?", tag) if repo == "pytorch/pytorch" else None
        pin = ("torch" if "pytorch" in last else "tensorflow") + (f"=={version.group(0)}" if version else "")
        draft.warn(f"{said}; put {pin} in requirements.in (devenv locks it)")
        if "cuda" in tag or repo.startswith("nvcr.io"):
            draft.base = "cuda"
            check_cuda((re.findall(r"cuda([0-9.]+)", tag) or [None])[0], f"{origin} {value!r} -> base: cuda", draft)
    elif repo.startswith("nvcr.io/nvidia/"):
        draft.base = "cuda"
        draft.warn(
            f"{said}; NGC images' tags do not say their CUDA version: base: cuda has CUDA "
            f"{'.'.join(map(str, cuda_base_version()))}; put the packages it ships in requirements.in"
        )
    elif last in ("anaconda", "miniconda", "miniconda3", "anaconda3", "miniforge3", "mambaforge", "micromamba"):
        draft.warn(f"{said}: {_CONDA}")
    elif last == "python" and (match := _PY_TAG_RE.search(tag)):
        draft.python.append((match.group(1), f"{origin} {value!r}"))
        draft.warn(f"{said}: it asks for Python {match.group(1)}")
    elif last == "python":
        draft.warn(f"{said}: its tag names no Python version; the base's Python is used")
    else:
        draft.warn(
            f"{said}: the cpu base (Debian, Python {base_python('cpu')}) is used instead; "
            "put extra Debian packages under apt:"
        )


def features(value: object, draft: Draft) -> None:
    """The common Dev Container Features mapped to what they install; every other one named."""
    items = (
        list(value.items())
        if isinstance(value, dict)
        else [(v, {}) for v in value]
        if isinstance(value, list)
        else None
    )
    if items is None:
        draft.warn("features not imported: expected an object of feature ids")
        return
    for feature_id, options in items:
        _feature(str(feature_id), options if isinstance(options, dict) else {"version": options}, draft)


def _feature(feature_id: str, options: dict[str, Any], draft: Draft) -> None:
    name = feature_id.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0].lower()
    said = f"feature '{feature_id}'"
    version = str(options.get("version", "")).strip()
    if name == "python":
        match = _VERSION_RE.fullmatch(version) or _VERSION_RE.match(version)
        if match:
            draft.python.append((f"{match.group(1)}.{match.group(2)}", said))
        else:
            draft.warn(f"{said}: no Python version to import ({version or 'default'}); the base's Python is used")
    elif name in ("nvidia-cuda", "cuda"):
        draft.base = "cuda"
        check_cuda(str(options.get("cudaVersion", options.get("version", ""))) or None, f"{said} -> base: cuda", draft)
        if options.get("installToolkit"):
            draft.warn(f"{said}: installToolkit not imported: the cuda base is the runtime image (no nvcc)")
    elif apt := _FEATURE_APT.get(name) or [name[:-8]] * bool(name[-8:] == "-apt-get" and _APT_RE.fullmatch(name[:-8])):
        for package in apt:
            draft.add_apt(package, said)
        pinned = (
            f"; version {version!r} not imported: the base's Debian package is used (pinned in devenv.lock)"
            if version and version not in ("latest", "lts", "os-provided")
            else ""
        )
        draft.warn(f"{said} -> apt: {', '.join(apt)}{pinned}")
    elif name == "common-utils":
        draft.warn(
            f"{said}: nothing to import: the base has a non-root user (dev), sudo-free setup and the common "
            "shell tools; add any missing ones under apt:"
        )
    elif name in ("conda", "miniconda", "anaconda", "miniforge", "mamba", "micromamba"):
        draft.warn(f"{said} not imported: {_CONDA}")
    elif name in ("docker-in-docker", "docker-outside-of-docker", "docker-from-docker"):
        draft.warn(
            f"{said} refused: it gives the workspace a Docker engine (privileged, or the host's socket), "
            "which is root on the host"
        )
    else:
        draft.warn(
            f"{said} not imported: devenv does not run Dev Container Features; put what it installs "
            "under apt: or in requirements.in"
        )


# ---- Dockerfiles ----


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions: continuations joined, heredoc bodies kept with their RUN, comments dropped."""
    instructions: list[str] = []
    current, heredoc = "", None
    for line in text.splitlines():
        if heredoc is not None:
            instructions[-1] += "\n" + line
            heredoc = None if line.strip() == heredoc else heredoc
        elif line.strip() and not line.strip().startswith("#"):
            current += line.strip()
            if current.endswith("\\"):
                current = current[:-1] + " "
                continue
            instructions.append(current)
            heredoc = match.group(1) if (match := re.search(r"<<-?\s*[\"']?(\w+)", current)) else None
            current = ""
    return instructions + ([current.strip()] if current.strip() else [])


def _run_body(body: str) -> str | None:
    """The shell line of a RUN instruction (flags dropped, exec form joined); None for a heredoc."""
    body = body.strip()
    while body.startswith("--"):  # RUN --mount=... --network=... flags
        body = body.partition(" ")[2].strip()
    if "<<" in body:
        return None
    if body.startswith("["):
        argv = json.loads(body) if _EXEC_FORM_RE.fullmatch(body) else None
        if isinstance(argv, list) and all(isinstance(arg, str) for arg in argv):
            return shlex.join(argv)
    return body


def _substitute(text: str, args: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return args.get(name) or match.group(0)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


def dockerfile(text: str, origin: str, args: dict[str, str], draft: Draft) -> None:
    """A Dockerfile read for its base image, ENV, EXPOSE and RUN lines (those of the final stage's chain)."""
    stages: list[tuple[str, str, list[str]]] = []  # (stage name, FROM reference, its instructions)
    for instruction in _instructions(text):
        keyword, _, body = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":  # their values stand in FROM and RUN lines, as docker substitutes them
            name, eq, default = body.strip().partition("=")
            args.setdefault(name.strip(), default.strip().strip("\"'") if eq else "")
        elif keyword == "FROM":
            words = [w for w in _substitute(body, args).split() if not w.startswith("--")]
            stage = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
            stages.append((stage, words[0] if words else "", []))
        elif stages:
            stages[-1][2].append(instruction)
    if not stages:
        draft.warn(f"{origin} not imported: it has no FROM line")
        return
    chain, reference = [stages[-1]], stages[-1][1]
    names = {stage[0]: stage for stage in stages if stage[0]}
    while reference.lower() in names and names[reference.lower()] not in chain:
        chain.insert(0, names[reference.lower()])
        reference = chain[0][1]
    if len(stages) > len(chain):
        draft.warn(
            f"{origin}: {len(stages) - len(chain)} build stage(s) the final one only copies from were not imported"
        )
    image(reference, f"{origin} FROM", draft)
    ignored: list[str] = []
    for _, _, instructions in chain:
        for instruction in instructions:
            keyword, _, body = instruction.partition(" ")
            keyword = keyword.upper()
            if keyword == "RUN":
                line = _run_body(_substitute(body, args))
                if line is None:
                    draft.warn(f"{origin}: a heredoc RUN step was not imported; copy it into setup: by hand")
                elif line:
                    run_line(line, f"{origin} RUN", draft)
            elif keyword == "ENV":
                _env(body, origin, draft)
            elif keyword == "EXPOSE":
                for number in (port.split("/")[0] for port in body.split()):
                    if number.isdigit() and 1 <= int(number) <= 65535:
                        draft.add_port(int(number), f"{origin} EXPOSE")
            elif keyword not in ignored:
                ignored.append(keyword)
    if ignored:
        draft.warn(
            f"{origin}: {', '.join(ignored)} not imported: devenv's base sets the user, folders and "
            "entrypoint, and the project's code arrives in the home (not COPY)"
        )


def _env(body: str, origin: str, draft: Draft) -> None:
    try:
        words = shlex.split(body)
    except ValueError:
        words = []
    pairs = (
        [w.partition("=")[::2] for w in words]
        if words and "=" in words[0]
        else [(words[0], " ".join(words[1:]))]
        if words
        else []
    )
    for key, value in pairs:
        if "$" in value:
            draft.warn(f"{origin} ENV {key} not imported: {value!r} refers to a variable devenv does not expand")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            draft.env[key] = value


def _commands(line: str) -> list[tuple[str, str]] | None:
    """(separator before it, text) of each command of a plain `a && b; c` chain; None for anything more."""
    pieces: list[tuple[str, str]] = []
    quote, start, index, separator = "", 0, 0, ""
    while index < len(line):
        char = line[index]
        if quote:
            quote = "" if char == quote else quote
            index += 2 if char == "\\" and quote == '"' else 1
            continue
        if char in "'\"":
            quote = char
        elif char == "\\" or line.startswith("${", index):  # an escape, or ${VAR} (no group)
            index = index + 1 if char == "\\" else (line.find("}", index) + 1 or len(line)) - 1
        elif line.startswith("&&", index) or char in ";\n":
            pieces.append((separator, line[start:index].strip()))
            separator = "&&" if char == "&" else ";"
            index += 2 if char == "&" else 1
            start = index
            continue
        elif char in "|&(){}`" or line.startswith("$(", index):
            return None
        index += 1
    pieces.append((separator, line[start:].strip()))
    pieces = [(sep, text) for sep, text in pieces if text]
    first_words = {text.split()[0] for _, text in pieces}
    return None if first_words & {"if", "for", "while", "until", "case", "function"} else pieces


def _words(text: str) -> list[str]:
    """A command's words with sudo and leading VAR=value assignments dropped."""
    try:
        words = shlex.split(text)
    except ValueError:
        return []
    while words and (words[0] in ("sudo", "-E", "env") or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]
    return words


def _pip_args(words: list[str]) -> list[str] | None:
    """The arguments after `pip install` (pip, pip3, python -m pip, uv pip); None when it is no pip install."""
    return next((words[len(prefix) :] for prefix in _PIP_PREFIXES if words[: len(prefix)] == prefix), None)


def pip_advice(args: list[str]) -> tuple[list[str], list[str], bool]:
    """(packages named, requirement files named, installs something local like `-e .`) of a pip install."""
    packages, files, local = [], [], False
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if word in ("-r", "--requirement", "-c", "--constraint"):
            files += args[index : index + 1]
            index += 1
        elif word in ("-e", "--editable"):
            local = True
            index += 1
        elif word in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix"):
            index += 1
        elif word.startswith("-"):
            continue
        elif word.startswith((".", "/", "~")) or word.endswith((".whl", ".tar.gz")):
            local = True
        elif word not in ("pip", "setuptools", "wheel"):
            packages.append(word)
    return packages, files, local


def run_line(line: str, origin: str, draft: Draft) -> None:
    """One Dockerfile RUN line: apt installs -> apt:, pip installs named for requirements.in, the rest to
    setup: (build time, no network) or hooks.create (needs the network)."""
    pieces = _commands(line)
    if pieces is None:
        _place(line, origin, draft, "it is more than a plain chain of commands; review it")
        return
    kept: list[tuple[str, str]] = []
    for separator, text in pieces:
        words = _words(text)
        pip = _pip_args(words)
        if words[:1] in (["apt-get"], ["apt"]) and "install" in words:
            for package in words[words.index("install") + 1 :]:
                name = package.split("=", 1)[0]
                if package.startswith("-"):
                    continue
                if _APT_RE.fullmatch(name):
                    draft.add_apt(name, origin)
                else:
                    draft.warn(f"{origin}: apt package {package!r} not imported: not a Debian package name")
            draft.warn(f"{origin} {text!r} -> apt: (devenv installs and pins them; versions come from devenv.lock)")
        elif words[:1] in (["apt-get"], ["apt"]) or (words[:2] == ["rm", "-rf"] and "/var/lib/apt" in text):
            continue  # update, clean, the lists: devenv's own apt step does them
        elif pip is not None:
            packages, files, local = pip_advice(pip)
            if local:
                kept.append((separator, text))
                continue
            advice = [f"put {', '.join(packages)} in requirements.in"] if packages else []
            advice += [f"add {', '.join(files)} to requirements:" for _ in files[:1]]
            draft.warn(
                f"{origin} {text!r} not imported: {'; '.join(advice) or 'it installs nothing'} "
                "(devenv locks Python packages; setup: has no network)"
            )
        elif words[:1] in (["conda"], ["mamba"], ["micromamba"]):
            draft.warn(f"{origin} {text!r} not imported: {_CONDA}")
        elif words:
            kept.append((separator, text))
    if not all(_words(text)[:1] == ["export"] for _, text in kept):  # exports alone set nothing for later RUNs
        rebuilt = kept[0][1] + "".join((" && " if sep == "&&" else "; ") + text for sep, text in kept[1:])
        _place(rebuilt, origin, draft, "")


def _place(line: str, origin: str, draft: Draft, note: str) -> None:
    note = f" ({note})" if note else ""
    if re.search(r"\b(?:useradd|groupadd|usermod|groupmod|adduser|addgroup)\b|/etc/sudoers", line):
        draft.warn(f"{origin} {line!r} not imported: it sets up users; workspaces run as the user dev")
    elif _NETWORK_RE.search(line):
        draft.create.append(line)
        draft.warn(
            f"{origin} {line!r} -> hooks.create: it needs the network, which setup: (build time) does not "
            f"have; it runs once in the running workspace, as dev{note}"
        )
    else:
        draft.setup.append(line)
        draft.warn(f"{origin} {line!r} -> setup: (runs at image build time, as root, with no network){note}")
