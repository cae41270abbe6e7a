"""`devenv init` reading system packages: packages.txt / apt.txt, and a project's Dockerfile.

From a Dockerfile only what devenv can pin is taken: `apt-get install` names go to apt:, `pip install`
names and `-r FILE` go to the requirements, `conda install` names go through environment.yml's table
(discover_conda). devenv builds from its own pinned base, so FROM, COPY and the
other RUN commands are named as not used rather than copied.
"""

from __future__ import annotations

import json
import re
import shlex

from devenv.spec.discover_conda import conda_package
from devenv.spec.discover_model import Found, is_file, plural, read_project_file
from devenv.spec.discover_python import add_line, project_install, take_file

APT_FILES = ("packages.txt", "apt.txt")
DOCKERFILES = ("Dockerfile", "docker/Dockerfile", "Containerfile")
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_PYTHON_IMAGE = re.compile(r"(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)")
_PIP_IGNORED = {
    "--no-cache-dir",
    "-U",
    "--upgrade",
    "--user",
    "--no-deps",
    "-q",
    "--quiet",
    "-v",
    "--pre",
    "--system",
    "--break-system-packages",
    "--no-compile",
    "--progress-bar",
}
_PIP_INDEX = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links"}
_PIP_PROVIDED = {"pip", "setuptools", "wheel", "uv"}
_CONDAS = ("conda", "mamba", "micromamba")
_CONDA_VALUED = {"-c", "--channel", "-n", "--name", "-p", "--prefix", "--file"}


def apt_files(found: Found) -> None:
    for name in APT_FILES:
        if not is_file(found.root, name):
            continue
        text = read_project_file(found, name) or ""
        count = 0
        for raw in text.splitlines():
            package = raw.split("#", 1)[0].strip()
            if not package:
                continue
            if _APT_NAME.fullmatch(package):
                found.add_apt(package, name)
                count += 1
            else:
                found.skip(name, f"{package!r}", "not a Debian package name")
        found.took(name, f"{count} Debian package{'s' if count != 1 else ''}")


def dockerfile(found: Found) -> None:
    name = next((n for n in DOCKERFILES if is_file(found.root, n)), None)
    if name is None:
        return
    text = read_project_file(found, name)
    if text is None:
        return
    instructions = _instructions(text)
    keywords = sorted({line.split()[0].upper() for line in instructions} - {"RUN"})
    for image in re.findall(r"(?im)^\s*FROM\s+(?:--\S+\s+)*(\S+)", text):
        python = _PYTHON_IMAGE.match(image)
        if python:
            found.python_pins.append((f"{python[1]}.{python[2]}", name))
        if "nvidia/cuda" in image:
            found.system_cuda.append(f"{name} FROM {image.split('@')[0]}")
    steps, heredocs = _run_steps(instructions)
    apt_before, lines_before = len(found.apt), len(found.requirement_lines) + len(found.requirement_files)
    other: list[str] = []
    conda = {"pypi": 0, "pip": 0, "apt": 0}
    for step in steps:
        for command in re.split(r"&&|\|\||;", step):
            try:
                tokens = shlex.split(command)
            except ValueError:
                other.append(command.strip())
                continue
            while tokens and (tokens[0] in ("sudo", "env") or re.fullmatch(r"[A-Za-z_]\w*=\S*", tokens[0])):
                tokens = tokens[1:]
            if not tokens:
                continue
            if tokens[0] in ("apt-get", "apt") and "install" in tokens:
                _apt_install(found, name, tokens[tokens.index("install") + 1 :])
            elif _is_pip(tokens) and "install" in tokens:
                _pip_install(found, name, tokens[tokens.index("install") + 1 :])
            elif tokens[0] in _CONDAS and tokens[1:2] == ["install"]:
                _conda_install(found, name, tokens[2:], conda)
            elif not (tokens[0] in ("apt-get", "apt") and tokens[1:2] in (["update"], ["clean"])):
                other.append(command.strip())
    apt_count = len(found.apt) - apt_before
    pip_count = len(found.requirement_lines) + len(found.requirement_files) - lines_before - conda["pypi"]
    found.took(
        name,
        f"{apt_count} apt-get package{'s' if apt_count != 1 else ''} and {pip_count} pip "
        f"requirement{'s' if pip_count != 1 else ''}",
    )
    if conda["pypi"] or conda["apt"]:
        found.took(
            name,
            f"{plural(conda['pypi'], 'conda package')} as PyPI packages and {conda['apt']} as Debian "
            "packages (conda install)",
        )
    if keywords:
        found.skip(name, ", ".join(keywords), "devenv builds from its pinned base; these instructions are not used")
    if other:
        shown = "; ".join(f"`{o[:60]}`" for o in other[:3])
        found.skip(
            name,
            f"{len(other)} other RUN command{'s' if len(other) != 1 else ''} ({shown})",
            "add what the image needs under setup: by hand",
        )
    if heredocs:
        found.skip(name, f"{heredocs} heredoc RUN step{'s' if heredocs != 1 else ''}", "not read")


def _is_pip(tokens: list[str]) -> bool:
    """pip, pip3, python -m pip, python3.11 -m pip, uv pip."""
    return (
        tokens[0] in ("pip", "pip3")
        or tokens[:2] == ["uv", "pip"]
        or (tokens[0].startswith("python") and tokens[1:3] == ["-m", "pip"])
    )


def _conda_install(found: Found, source: str, args: list[str], counts: dict[str, int]) -> None:
    """`conda install [-c CHANNEL] [-y] pkg ...`: each package through environment.yml's table; channels unused."""
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg in _CONDA_VALUED:
            index += 1
        elif not arg.startswith("-"):
            conda_package(found, source, arg, counts)


def _apt_install(found: Found, source: str, args: list[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            continue
        package = arg.split("=", 1)[0]
        if _APT_NAME.fullmatch(package):
            found.add_apt(package, source)
        else:
            found.skip(source, f"apt package {arg!r}", "not a Debian package name (a variable or a path?)")


def _pip_install(found: Found, source: str, args: list[str]) -> None:
    index = 0
    while index < len(args):
        arg = args[index]
        value = args[index + 1] if index + 1 < len(args) else ""
        option, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if option in ("-r", "--requirement", "-e", "--editable") or option in _PIP_INDEX:
            value = inline or value
            index += 1 if inline else 2
            if option in _PIP_INDEX:
                add_line(found, f"{option} {value}", source)
            elif option in ("-r", "--requirement"):
                _requirement_file(found, source, value)
            else:
                _local(found, source, value, editable=True)
            continue
        index += 1
        if arg.startswith("-"):
            if arg not in _PIP_IGNORED:
                found.skip(source, f"pip option {arg}", "not used")
        elif arg in (".", "./") or arg.startswith(("./", "/")):
            _local(found, source, arg, editable=False)
        elif arg.split("=")[0].split("<")[0].split(">")[0].lower() not in _PIP_PROVIDED:
            add_line(found, arg, source)


def _requirement_file(found: Found, source: str, path: str) -> None:
    """`pip install -r X` names a path inside the image; the project file of that name is read if there is one."""
    candidates = [path.lstrip("./"), path.rsplit("/", 1)[-1]]
    match = next((c for c in candidates if c and is_file(found.root, c)), None)
    if match is None:
        found.skip(source, f"pip install -r {path}", "no such file in the project")
    elif match not in found.requirement_files:
        take_file(found, match)


def _local(found: Found, source: str, path: str, *, editable: bool) -> None:
    if path.rstrip("/") in (".", "", "/app", "/code", "/src", "/workspace"):
        project_install(found, source)
    else:
        found.skip(source, f"pip install {'-e ' if editable else ''}{path}", "a path inside the image: not used")


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with backslash continuations joined and comment lines dropped.

    Its own small reader: devcontainer.py reads Dockerfiles for another purpose and is free to change."""
    instructions: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        instructions.append((current + line).strip())
        current = ""
    if current.strip():
        instructions.append(current.strip())
    return instructions


def _run_steps(instructions: list[str]) -> tuple[list[str], int]:
    """(the RUN commands as shell lines, how many heredoc RUNs were skipped)."""
    steps: list[str] = []
    heredocs = 0
    for instruction in instructions:
        keyword, _, body = instruction.partition(" ")
        if keyword.upper() != "RUN":
            continue
        words = body.split()
        while words and words[0].startswith("--"):  # RUN --mount=... --network=...
            words = words[1:]
        body = " ".join(words)
        if "<<" in body:
            heredocs += 1
        elif body.startswith("["):
            try:
                argv = json.loads(body)
            except json.JSONDecodeError:
                argv = None
            if isinstance(argv, list) and all(isinstance(arg, str) for arg in argv):
                steps.append(shlex.join(argv))
        elif body:
            steps.append(body)
    return steps, heredocs
