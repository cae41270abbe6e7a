"""Issue 18: `devenv init` then `devenv up` on each real repository of tests/corpus, and the share that comes up
with its declared dependencies importable (target 90%), with the reason for every other one.

    python tests/bench/bench_corpus.py [--only NAME]... [--limit N] [--keep] [--with-gpu] [--json OUT]

Each entry is copied to a fresh folder, made a git checkout (so `up` uploads code as from a clone), read by the
real `devenv init` (no flag), brought up by the real `devenv up` against a real devenvd on the local engine,
then checked with `devenv exec WS -- python -c ...`: for every requirement the spec's files declare (markers
evaluated for the workspace's Python), the distribution is found in the workspace and its top-level modules
(top_level.txt, else RECORD; a small table where those mislead) are imported,
each in its own interpreter. Lighter entries run first.

This machine has no GPU: by default (--cpu-only) a spec's `resources.gpu` is taken out before `up` and the
engine request it would have made is printed (the DeviceRequest the Docker backend builds from it), and a
`base: cuda` is run on the CPU base. Not a timed test: it prints figures and failures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from devenv.backends.base import LaunchRequest
from devenv.backends.containers import container_spec
from devenv.spec.discover import base_python
from devenv.spec.models import slugify
from devenv.spec.units import parse_gpu

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
TARGET = 0.90
HEAVY = ("torch", "tensorflow", "jax", "cuda", "transformers", "opencv", "conda", "nvidia")
# distribution -> modules, where top_level.txt/RECORD name something else or nothing useful
MODULES = {
    "hydra-colorlog": ["hydra_plugins.hydra_colorlog"],
    "hydra-optuna-sweeper": ["hydra_plugins.hydra_optuna_sweeper"],
    "protobuf": ["google.protobuf"],
    "opencv-python": ["cv2"],
    "opencv-python-headless": ["cv2"],
    "tensorflow-cpu": ["tensorflow"],
    "ultralytics-thop": ["thop"],
    "pickle-mixin": [],
    "jupyter": [],
    "psycopg-binary": ["psycopg"],
    "mlflow": ["mlflow"],  # top_level.txt of mlflow 2.x also names its test-only pylint_plugins (needs astroid)
    "xgboost": ["xgboost"],  # 1.7's top_level.txt names libxgboost, a shared library beside the package
    "black": ["black"],  # its blackd needs the [d] extra (aiohttp)
    "torch": ["torch", "functorch"],  # 2.0's top_level.txt names nvfuser, which loads CUDA's nvtx only after torch
}
NEEDS_CODE = re.compile(
    r"does not exist|no such file|not a directory|neither 'setup\.py' nor 'pyproject\.toml'"
    r"|does not appear to be a python project|can't open file",
    re.I,
)
# the project's own install (`pip install ... -e .`) builds from its sources, which the corpus never keeps
PROJECT_INSTALL = re.compile(r"hooks\.create step \d+ \(`[^`]*pip install [^`]*-e \.`\)")
NOT_MODULES = {"tests", "test", "docs", "doc", "examples", "benchmarks", "scripts", "bin", "src", "share"}
CHECK = r"""
import importlib.metadata as md, json, subprocess, sys
names, table, skip = json.loads(sys.argv[1]), json.loads(sys.argv[2]), set(json.loads(sys.argv[3]))
report = {}
for name in names:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        report[name] = ["not installed"]; continue
    mods = table.get(name)
    if mods is None:
        mods = (dist.read_text("top_level.txt") or "").split()
        if not mods:
            parts = {f.parts[0] for f in (dist.files or []) if len(f.parts) > 1 or f.suffix == ".py"}
            mods = sorted(p[:-3] if p.endswith(".py") else p for p in parts
                          if not p.endswith((".dist-info", ".egg-info", ".data")))
        mods = [m for m in mods if m.isidentifier() and not m.startswith("_") and m not in skip]
    errors = []
    for mod in mods:  # each in its own interpreter, as a user's script imports it (no order effects)
        done = subprocess.run([sys.executable, "-c", "import " + mod], capture_output=True, text=True, timeout=600)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]
            errors.append(f"import {mod}: {last[:200]}")
    report[name] = errors
print("CORPUS-CHECK " + json.dumps(report))
"""


@dataclass
class Result:
    name: str
    ok: bool = False
    stage: str = ""  # init | up: lock | up: build | up | import
    reason: str = ""
    init_s: float = 0.0
    up_s: float = 0.0
    gpu_request: str = ""
    changed: list[str] = field(default_factory=list)
    checked: int = 0
    hook: str = ""  # a hook that failed for want of the repository's code (set aside: the corpus has none)


def weight(folder: Path) -> int:
    text = " ".join(p.read_text(errors="replace").lower() for p in folder.rglob("*") if p.is_file())
    return sum(text.count(word) for word in HEAVY)


def entries(only: list[str], limit: int | None) -> list[Path]:
    folders = [p for p in CORPUS.iterdir() if p.is_dir()]
    if only:
        unknown = set(only) - {p.name for p in folders}
        if unknown:
            raise SystemExit(f"no such corpus entries: {', '.join(sorted(unknown))}")
        folders = [p for p in folders if p.name in only]
    folders.sort(key=lambda p: (weight(p), p.name))
    return folders[:limit] if limit else folders


def checkout(entry: Path, work: Path) -> Path:
    """The entry as a checkout whose one commit carries the date its files were last changed upstream, so init
    reads the history as it would in the real repository (requirements_as_of)."""
    project = work / entry.name
    shutil.copytree(entry, project, ignore=shutil.ignore_patterns("SOURCE.yaml", ".ruff_cache", "__pycache__"))
    committed = str(yaml.safe_load((entry / "SOURCE.yaml").read_text())["committed"])
    dated = {**os.environ, "GIT_AUTHOR_DATE": committed, "GIT_COMMITTER_DATE": committed}
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", f"corpus {entry.name}"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, env=dated)
    return project


def to_cpu(spec_path: Path, result: Result) -> None:
    """Take the GPU request out (recording what the engine would have been asked) and run cuda on the CPU base."""
    data = yaml.safe_load(spec_path.read_text())
    resources = data.get("resources") or {}
    if resources.get("gpu") is not None:
        gpu = parse_gpu(resources["gpu"])
        request = LaunchRequest(
            workspace=data["name"],
            owner="bench",
            image="bench",
            image_hash="bench",
            gpu_count=gpu.count,
            gpu_kind=gpu.type,
        )
        devices = container_spec(request, backend="local", remote=False).host_config["device_requests"]
        result.gpu_request = f"gpu {gpu} -> " + "; ".join(
            f"DeviceRequest(count={d['Count']}, capabilities={d['Capabilities']})" for d in devices
        )
        del resources["gpu"]
        result.changed.append("resources.gpu removed")
    if data.get("base") == "cuda":
        data.pop("base")
        data["python"] = base_python("cpu")
        result.changed.append(f"base cuda -> cpu (python {data['python']})")
    if result.changed:
        spec_path.write_text(yaml.safe_dump(data, sort_keys=False))


def declared(project: Path, files: list[str], python: str) -> list[str]:
    """The distributions the spec's requirement files name (following -r), markers evaluated for `python`."""
    names: dict[str, None] = {}
    environment = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    }
    pending, seen = [project / f for f in files], set()
    while pending:
        path = pending.pop(0)
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for raw in path.read_text(errors="replace").splitlines():
            line = re.sub(r"(^|\s)#.*", "", raw).strip()
            include = re.match(r"(-r|--requirement)\s*=?\s*(\S+)", line)
            if include:
                pending.append(path.parent / include.group(2))
                continue
            if not line or line.startswith("-"):
                continue
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate(environment):
                names[requirement.name.lower().replace("_", "-")] = None
    return list(names)


STAGES = {"lock_failed": "up: lock", "build_failed": "up: build", "hook_failed": "up: hook"}
# hosts a real user reaches and these machines do not (they reach PyPI and Debian only): an entry that stops on
# one is counted apart, as a limit of this machine, with the host named
UNREACHABLE = re.compile(
    r"(download\.pytorch\.org|pypi\.nvidia\.com|github\.com|registry-1\.docker\.io)"
    r".{0,400}?(Request failed|dial tcp|no such host|Could not resolve|returned non-zero|"
    r"Failed to fetch|Temporary failure)|(Request failed|Failed to fetch).{0,400}?"
    r"(download\.pytorch\.org|pypi\.nvidia\.com|github\.com)",
    re.S,
)


def unreachable_host(reason: str) -> str | None:
    """The host outside PyPI/Debian an entry needed, when it stopped for want of it."""
    found = UNREACHABLE.search(reason)
    if found is None:
        return None
    return next(group for group in (found.group(1), found.group(4)) if group)


def reason_of(output: str) -> tuple[str, str]:
    """The stage a failed `up` stopped at (from devenv's error code) and its message: devenv's error line, the
    tool's own first error line (uv, pip, apt) when it is another, and the hint."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    coded = next((i for i, line in enumerate(lines) if re.match(r"error \((\w+)\)", line)), None)
    tool = next((line for line in lines if re.match(r"(error|E):", line, re.I)), "")
    hint = next((line for line in lines if line.startswith("hint:")), "")
    cause = next((line for line in lines if line.startswith(("cause:", "Because", "╰─▶"))), "")
    if coded is None:
        return "up", " | ".join(dict.fromkeys([tool, *lines[-3:]]) if tool else lines[-4:])[:900]
    code = re.match(r"error \((\w+)\)", lines[coded]).group(1)  # type: ignore[union-attr]
    message = " | ".join(x for x in dict.fromkeys([*lines[coded : coded + 3], tool, cause, hint]) if x)
    return STAGES.get(code, f"up: {code}"), shorten(message)


def shorten(text: str, head: int = 300, tail: int = 700) -> str:
    """A long message's start (what failed) and end (the exit code and the tool's last words)."""
    return text if len(text) <= head + tail else f"{text[:head]} [...] {text[-tail:]}"


def run_entry(daemon: Devenvd, entry: Path, work: Path, *, cpu_only: bool, keep: bool, timeout: float) -> Result:
    result = Result(entry.name)
    project = checkout(entry, work)
    workspace = slugify(entry.name)[:40].strip("-") or "corpus"
    started = time.perf_counter()
    done = daemon.cli("init", "--name", workspace, cwd=project, timeout=120)
    result.init_s = time.perf_counter() - started
    if done.returncode != 0 or "Traceback" in done.stdout + done.stderr:
        result.stage, result.reason = "init", (done.stderr or done.stdout).strip()[-700:]
        return result
    spec_path = project / "devenv.yaml"
    if cpu_only:
        to_cpu(spec_path, result)
    spec = yaml.safe_load(spec_path.read_text())
    started = time.perf_counter()
    try:
        done = daemon.cli("up", cwd=project, timeout=timeout)
    except subprocess.TimeoutExpired:
        result.up_s = time.perf_counter() - started
        result.stage, result.reason = "up", f"timed out after {timeout:.0f} s"
        cleanup(daemon, workspace, keep)
        return result
    result.up_s = time.perf_counter() - started
    if done.returncode != 0:
        result.stage, result.reason = reason_of(done.stdout + "\n" + done.stderr)
        # a failed hook keeps its container up; one that needs the repository's code (never in the corpus)
        # is set aside, and the dependencies are still checked
        needs_code = NEEDS_CODE.search(result.reason) or PROJECT_INSTALL.search(result.reason)
        if result.stage != "up: hook" or not needs_code:
            cleanup(daemon, workspace, keep)
            return result
        result.hook = result.reason
        result.stage = result.reason = ""
    names = declared(project, [str(f) for f in spec.get("requirements") or []], str(spec.get("python")))
    result.checked = len(names)
    if not names:  # nothing to import is no success: every corpus project declares dependencies somewhere
        result.stage, result.reason = "init", "no Python dependency taken: what the project declares was not read"
        cleanup(daemon, workspace, keep)
        return result
    check = daemon.cli(
        "exec",
        workspace,
        "--",
        "python",
        "-c",
        CHECK,
        json.dumps(names),
        json.dumps(MODULES),
        json.dumps(sorted(NOT_MODULES)),
        timeout=900,
    )
    line = next((x for x in check.stdout.splitlines() if x.startswith("CORPUS-CHECK ")), None)
    if line is None:
        result.stage, result.reason = (
            "import",
            f"check did not run (exit {check.returncode}): {(check.stderr or check.stdout).strip()[-400:]}",
        )
    else:
        failed = {name: errors for name, errors in json.loads(line.split(" ", 1)[1]).items() if errors}
        result.ok = not failed
        if failed:
            result.stage = "import"
            result.reason = "; ".join(f"{name}: {', '.join(errors)}" for name, errors in failed.items())[:900]
    cleanup(daemon, workspace, keep)
    return result


def cleanup(daemon: Devenvd, workspace: str, keep: bool) -> None:
    if keep:
        return
    image = None
    with contextlib.suppress(Exception):  # a workspace whose up failed early has no record
        image = daemon.client.workspace(workspace).get("image")
    daemon.cli("rm", workspace, timeout=300)
    if image:  # each entry's image is its own: removing it (and its step cache) keeps the disk from filling
        subprocess.run(["docker", "image", "rm", image, image.rsplit(":", 1)[0] + ":steps"], capture_output=True)


def report(results: list[Result]) -> None:
    print("\n=== corpus: init -> up -> import")
    for r in results:
        state = "OK  " if r.ok else f"FAIL [{r.stage}]"
        print(
            f"{r.name:58} init {r.init_s:5.1f} s  up {r.up_s:7.1f} s  {state}"
            + (f"  ({r.checked} deps imported)" if r.ok else "")
        )
        if r.hook:
            print(f"    hook set aside (needs the repository's code): {r.hook[:300]}")
        if r.gpu_request or r.changed:
            print(
                f"    cpu-only: {', '.join(r.changed)}"
                + (f"; engine request: {r.gpu_request}" if r.gpu_request else "")
            )
        if not r.ok:
            print(f"    {r.reason}")
    ok = sum(r.ok for r in results)
    share = ok / len(results) if results else 0.0
    print(
        f"\nup with dependencies importable: {ok}/{len(results)} = {share:.0%}  (target {TARGET:.0%}: "
        f"{'met' if share >= TARGET else 'not met'})"
    )
    limited = {r.name: host for r in results if not r.ok and (host := unreachable_host(r.reason))}
    if limited:
        served = len(results) - len(limited)
        print(
            f"  stopped on a host this machine cannot reach: {', '.join(f'{n} ({h})' for n, h in limited.items())}"
            f"\n  of the other {served}: {ok}/{served} = {ok / served if served else 0:.0%}"
        )
    stages: dict[str, int] = {}
    for r in results:
        if not r.ok:
            stages[r.stage] = stages.get(r.stage, 0) + 1
    hooks = sum(r.ok and bool(r.hook) for r in results)
    if hooks:
        print(f"  of which {hooks} had a hook that needs the repository's code set aside (the corpus keeps none)")
    if stages:
        print("failures by stage: " + ", ".join(f"{stage} {count}" for stage, count in sorted(stages.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="an entry (repeatable)")
    parser.add_argument("--limit", type=int, help="the first N entries, lightest first")
    parser.add_argument("--keep", action="store_true", help="keep workspaces, images and project copies")
    parser.add_argument(
        "--with-gpu",
        dest="cpu_only",
        action="store_false",
        help="send resources.gpu as written (default: --cpu-only, this machine has no GPU)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one `devenv up`")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-corpus-", dir="/tmp"))
    daemon = Devenvd()
    daemon.start()
    results: list[Result] = []
    try:
        for entry in entries(args.only, args.limit):
            result = run_entry(daemon, entry, work, cpu_only=args.cpu_only, keep=args.keep, timeout=args.timeout)
            results.append(result)
            print(
                f"[{len(results)}] {entry.name}: {'OK' if result.ok else 'FAIL ' + result.stage} "
                f"(up {result.up_s:.0f} s) {'' if result.ok else result.reason[:300]}",
                flush=True,
            )
            if args.json:
                args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    finally:
        if not args.keep:
            daemon.cleanup()
            shutil.rmtree(work, ignore_errors=True)
        else:
            daemon.stop()
            print(f"kept: projects in {work}, daemon home {daemon.home}", file=sys.stderr)
    report(results)


if __name__ == "__main__":
    main()
