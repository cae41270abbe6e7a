"""`devenv ci run`: the spec's test command in the project's locked image, with an optional JUnit report.

The same command runs on a laptop, in a pre-push hook and on a CI runner, so "green in CI" means
green in the image people work in. The daemon runs it (devenv/daemon/services/project_work.py: `ci`): the
project folder is uploaded as `up` uploads it, the tests run in it in a fresh container, and the files they
create or change come back (devenv/code/changes.py). What is here is the client's half: the output kept for
the report, and the report.
"""

from __future__ import annotations

import re
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import BinaryIO

from devenv.code.changes import write_back
from devenv.errors import DevenvError

OUTPUT_TAIL = 64 * 1024  # bytes of output a JUnit report keeps: enough to see why, small enough to upload
SUITE_NAME = "devenv ci"

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# What XML 1.0 cannot carry at all, even escaped: most C0 controls, surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Tail:
    """The last `limit` bytes of a stream, and how many came before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess


def xml_text(raw: bytes | str) -> str:
    """Text any XML parser accepts: colour codes dropped, other forbidden characters shown as \\xNN."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = _ANSI.sub("", text)
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def junit_xml(
    *,
    suite: str,
    command: str,
    code: int | None,
    seconds: float,
    output: bytes,
    dropped: int = 0,
    error: str | None = None,
) -> bytes:
    """One suite, one test case named after the command: the same inputs give the same bytes.

    `code` None with `error` set means the tests never ran (the image did not build): an <error>.
    """
    failed = code is not None and code != 0
    errored = code is None
    time_text = f"{seconds:.3f}"
    counts = {
        "tests": "1",
        "failures": "1" if failed else "0",
        "errors": "1" if errored else "0",
        "skipped": "0",
        "time": time_text,
    }
    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite_element = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts})
    case = ET.SubElement(
        suite_element, "testcase", {"classname": xml_text(suite), "name": xml_text(command), "time": time_text}
    )
    body = xml_text(output)
    if dropped:
        body = f"[{dropped} earlier bytes of output not kept]\n{body}"
    if errored:
        ET.SubElement(case, "error", {"message": xml_text(error or "the tests did not run"), "type": "devenv"}).text = (
            body or None
        )
    elif failed:
        ET.SubElement(case, "failure", {"message": f"exited with code {code}", "type": "exit-code"}).text = body
    else:
        ET.SubElement(case, "system-out").text = body
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


class Output:
    """What the client keeps of a CI run's stream: the tail of the output for the report, and the tar of
    the files the tests changed (written back once it ends)."""

    def __init__(self, out: BinaryIO, err: BinaryIO) -> None:
        self.streams = {"stdout": out, "stderr": err}
        self.tail = _Tail(OUTPUT_TAIL)
        self.changed = tempfile.TemporaryFile(prefix="devenv-ci-changed-")  # noqa: SIM115 (closed by close)
        self.started = time.perf_counter()

    def write(self, which: str, chunk: bytes) -> None:
        if which == "changed":
            self.changed.write(chunk)
            return
        stream = self.streams[which]
        stream.write(chunk)
        stream.flush()
        self.tail.add(chunk)

    def give_back(self, folder: Path) -> list[str]:
        """The files the tests changed, written into `folder`; their paths."""
        if not self.changed.tell():
            return []
        self.changed.seek(0)
        return write_back(self.changed, folder)

    def close(self) -> None:
        self.changed.close()

    def report(self, path: Path, *, suite: str, command: str, code: int) -> None:
        write_report(
            path,
            junit_xml(
                suite=suite,
                command=command,
                code=code,
                seconds=time.perf_counter() - self.started,
                output=bytes(self.tail.data),
                dropped=self.tail.dropped,
            ),
        )


def write_report(path: Path, report: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(report)
    tmp.replace(path)


def error_report(path: Path, *, suite: str, command: str, seconds: float, error: DevenvError) -> None:
    """The report of tests that never ran (the image did not build): an <error>, so CI shows why."""
    write_report(
        path, junit_xml(suite=suite, command=command, code=None, seconds=seconds, output=b"", error=error.render())
    )
