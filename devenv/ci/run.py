"""`devenv ci run`: the spec's test command in the project's locked image, with an optional JUnit report.

The same command runs on a laptop, in a pre-push hook and on a CI runner, so "green in CI" means
green in the image people work in. Like `devenv run`, it is a local command on the local engine:
the project's folder is bind-mounted into a fresh container, which is removed afterwards.
"""

from __future__ import annotations

import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import BinaryIO

from devenv.build.project import Project, build_project
from devenv.ci.workflow import require_test
from devenv.engine.errors import engine_errors
from devenv.engine.sdk import DockerClient
from devenv.errors import DevenvError
from devenv.progress import Progress, emit

PROJECT_MOUNT = "/home/dev/project"
CI_LABEL = "devenv.ci"
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


def _write_report(path: Path, report: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(report)
    tmp.replace(path)


def ci_image(
    client: DockerClient, project: Project, progress: Progress | None = None, *, junit: Path | None = None
) -> str:
    """The project's image, built if needed (a tag lookup when nothing changed); returns its tag.

    A failed build still leaves a JUnit report (an <error>) when asked for one, so CI shows why.
    """
    command = require_test(project.spec, project.spec_path)
    started = time.perf_counter()
    try:
        return build_project(client, project, progress).tag
    except DevenvError as failure:
        if junit is not None:
            _write_report(
                junit,
                junit_xml(
                    suite=project.spec.name,
                    command=command,
                    code=None,
                    seconds=time.perf_counter() - started,
                    output=b"",
                    error=failure.render(),
                ),
            )
        raise


def run_tests(
    client: DockerClient,
    project: Project,
    image: str,
    *,
    junit: Path | None = None,
    progress: Progress | None = None,
    out: BinaryIO | None = None,
    err: BinaryIO | None = None,
) -> int:
    """Run `ci.test` through `bash -c` in a fresh container of `image` as `dev`, in the mounted project.

    Output streams as it comes; the exit code is returned, and with `junit` a report is written.
    """
    command = require_test(project.spec, project.spec_path)
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    tail = _Tail(OUTPUT_TAIL)
    emit(progress, "phase", f"running `{command}` in {image}")
    started = time.perf_counter()
    with engine_errors(f"running the tests in {image}"):
        container = client.containers.create(
            image,
            ["bash", "-c", command],
            user="dev",
            working_dir=PROJECT_MOUNT,
            environment={"CI": "true", **project.spec.env},
            volumes={str(project.directory): {"bind": PROJECT_MOUNT, "mode": "rw"}},
            labels={"devenv.one-shot": "true", CI_LABEL: project.spec.name},
        )
        try:
            container.start()
            for stdout, stderr in container.attach(stream=True, logs=True, demux=True):
                for chunk, stream in ((stdout, out), (stderr, err)):
                    if chunk:
                        stream.write(chunk)
                        stream.flush()
                        tail.add(chunk)
            code = int(container.wait().get("StatusCode", 1))
        finally:
            container.remove(force=True)
    seconds = time.perf_counter() - started
    if junit is not None:
        _write_report(
            junit,
            junit_xml(
                suite=project.spec.name,
                command=command,
                code=code,
                seconds=seconds,
                output=bytes(tail.data),
                dropped=tail.dropped,
            ),
        )
    return code


def run_ci(
    client: DockerClient,
    project: Project,
    *,
    junit: Path | None = None,
    progress: Progress | None = None,
    out: BinaryIO | None = None,
    err: BinaryIO | None = None,
) -> int:
    """Build (or reuse) the locked image, run the spec's tests in it, return their exit code."""
    image = ci_image(client, project, progress, junit=junit)
    return run_tests(client, project, image, junit=junit, progress=progress, out=out, err=err)
