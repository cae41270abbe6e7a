"""The fake engine's containers, volumes and the tiny shell its exec runs (devenv.testing.fake_backend)."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from devenv.backends.base import HOME_MOUNT, SECRETS_DIR, ContainerStatus, Handle, LaunchRequest

ExecResult = tuple[int, bytes, bytes]  # exit code, stdout, stderr
DOCKER_SHM = 64 * 1024**2  # /dev/shm when a request names no size
_ULIMIT_FLAGS = {
    "-l": ("memlock", 1024),
    "-s": ("stack", 1024),
    "-c": ("core", 1024),
    "-n": ("nofile", 1),
    "-u": ("nproc", 1),
}


@dataclass
class FakeContainer:
    id: str
    request: LaunchRequest
    handle: Handle
    status: ContainerStatus = "created"
    detail: str = "Created"
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port, while running
    log: list[bytes] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # outside the home volume: lost on remove
    secrets: dict[str, bytes] = field(default_factory=dict)  # the tmpfs: lost on stop


@dataclass
class FakeVolume:
    name: str
    workspace: str
    owner: str
    files: dict[str, bytes] = field(default_factory=dict)
    image_hash: str | None = None


class FakeShell:
    """A tiny shell: `true`, `false`, `echo WORDS [>&2 | > FILE | >> FILE]`, `cat FILE`, `exit N`, joined by `;`;
    `mkdir`, `ulimit -l|-s|-c|-n|-u` and `df -B1 --output=size /dev/shm` answer from the LaunchRequest;
    `id -un`, `pwd` and `printenv NAME` from the exec's user, workdir and environment; `stat -c '%a %U' FILE`.

    Files under HOME_MOUNT live in the home volume (they outlive the container); others in the container.
    """

    def __init__(
        self,
        container: FakeContainer,
        volume: FakeVolume,
        workdir: str,
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.container, self.volume, self.workdir = container, volume, workdir
        self.user, self.env = user, dict(env or {})
        self.out, self.err = bytearray(), bytearray()
        self.shell = False

    def run(self, argv: list[str]) -> ExecResult:
        self.shell = len(argv) == 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c"
        if self.shell:
            lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=";&>")
            lexer.whitespace_split = True
            tokens = list(lexer)
        else:  # no shell: every word is an argument, `;` and `>` included
            return self._statement(list(argv)), bytes(self.out), bytes(self.err)
        statements: list[list[str]] = [[]]
        for token in tokens:
            if token == ";":
                statements.append([])
            else:
                statements[-1].append(token)
        code = 0
        for words in statements:
            if not words:
                continue
            if words[0] == "exit":
                return (int(words[1]) if len(words) > 1 else code), bytes(self.out), bytes(self.err)
            code = self._statement(words)
        return code, bytes(self.out), bytes(self.err)

    def _statement(self, words: list[str]) -> int:
        command, args = words[0], words[1:]
        if command == "true":
            return 0
        if command == "false":
            return 1
        if command == "echo":
            text, target = _redirect(args) if self.shell else (args, None)
            line = (" ".join(text) + "\n").encode()
            if target is None:
                self.out += line
            elif target == ">&2":
                self.err += line
            else:
                files, path = self._files(target[1])
                files[path] = (files.get(path, b"") if target[0] == ">>" else b"") + line
            return 0
        if command == "mkdir":  # folders are implied by the files' paths
            return 0
        if words == ["id", "-un"]:
            self.out += f"{self.user}\n".encode()
            return 0
        if words == ["pwd"]:
            self.out += f"{self.workdir}\n".encode()
            return 0
        if command == "printenv" and len(args) == 1:
            if args[0] not in self.env:
                return 1
            self.out += f"{self.env[args[0]]}\n".encode()
            return 0
        if command == "stat" and args[:2] == ["-c", "%a %U"] and len(args) == 3:
            files, path = self._files(args[2])
            if path not in files:
                self.err += f"stat: cannot statx '{args[2]}': No such file or directory\n".encode()
                return 1
            self.out += b"400 dev\n" if files is self.container.secrets else b"644 root\n"
            return 0
        if command == "ulimit" and len(args) == 1 and args[0] in _ULIMIT_FLAGS:
            name, unit = _ULIMIT_FLAGS[args[0]]
            value = self.container.request.ulimits.get(name, -1)
            self.out += b"unlimited\n" if value == -1 else f"{value // unit}\n".encode()
            return 0
        if command == "df" and args[-1:] == ["/dev/shm"] and "--output=size" in args:
            self.out += f"1B-blocks\n{self.container.request.shm or DOCKER_SHM}\n".encode()
            return 0
        if command == "cat" and args:
            for name in args:
                files, path = self._files(name)
                if path not in files:
                    self.err += f"cat: {name}: No such file or directory\n".encode()
                    return 1
                self.out += files[path]
            return 0
        self.err += f"sh: 1: {command}: not found (the fake shell does not know it)\n".encode()
        return 127

    def _files(self, name: str) -> tuple[dict[str, bytes], str]:
        path = posixpath.normpath(posixpath.join(self.workdir, name))
        if path == HOME_MOUNT or path.startswith(HOME_MOUNT + "/"):
            return self.volume.files, path
        if posixpath.dirname(path) == SECRETS_DIR:  # the tmpfs holds the names put_secrets gave
            return self.container.secrets, posixpath.basename(path)
        return self.container.files, path


def _redirect(args: list[str]) -> tuple[list[str], str | tuple[str, str] | None]:
    """Split `echo`'s words from a trailing `>&2`, `> FILE` or `>> FILE`."""
    if len(args) >= 2 and args[-2] == ">&" and args[-1] == "2":
        return args[:-2], ">&2"
    if len(args) >= 2 and args[-2] in (">", ">>"):
        return args[:-2], (args[-2], args[-1])
    return args, None
