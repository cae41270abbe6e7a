"""Confinement (DESIGN.md, "The API"): everything a spec names stays inside the project or under a folder
the admin allows; bad input is a typed error that leaves nothing behind. Fast, no engine."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import sessionmaker

from devenv.cli.main import main
from devenv.confinement import HostFolders, name_problem, project_path_problem
from devenv.daemon.services.backends import load_host_folders
from devenv.daemon.services.projects import Projects, Upload, check_upload
from devenv.errors import LockError, LockMissing, SpecInvalid, UsageError
from devenv.lock.lockfile import read_lock
from devenv.lock.python import resolve_python
from devenv.requirements import requirement_problems
from devenv.spec import load_spec_text, parse_duration, parse_gpu, parse_size
from devenv.spec.devcontainer import import_devcontainer
from devenv.upload import collect_project, spec_fields

MARKER = "MARKER-7f3a9c-outside-the-project"
BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9))
    + "name: boom\nsetup: *j\n"
)


def spec(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    for name, text in {"requirements.in": "", **(files or {})}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    path = folder / "devenv.yaml"
    path.write_text("name: demo\n" + body)
    return path


def issues(path: Path) -> list[tuple[str, str, int | None, str]]:
    with pytest.raises(SpecInvalid) as invalid:
        load_spec_text(path.read_text(), str(path), path.parent)
    assert invalid.value.exit_code == 2
    return [(issue.file, issue.field, issue.line, issue.message) for issue in invalid.value.issues]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secrets.key"
    secret.write_text(f"{MARKER}\n")
    return secret


# ---- project files named by the spec ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "/etc/shadow",
        "../../../../etc/shadow",
        "sub/../../x.in",
        "~/x.in",
        "a//b.in",
        "./r.in",
        "r.in\n",
        "r\x00.in",
        "sub/",
        "C:\\x.in",
        "a\\b.in",
        "x" * 256,
        ("a/" * 600) + "r.in",
    ],
)
def test_a_requirement_outside_or_odd_is_refused_by_the_model_with_its_line(tmp_path: Path, name: str) -> None:
    found = issues(spec(tmp_path, f"requirements:\n  - {json.dumps(name)}\n"))
    assert {(field, line) for _, field, line, _ in found} == {("requirements[0]", 3)}, found


def test_the_absolute_secrets_key_is_refused_without_a_byte_of_it(tmp_path: Path, outside: Path) -> None:
    found = issues(spec(tmp_path, f"requirements: ['{outside}']\n"))
    assert found and all(MARKER not in str(item) for item in found)


def test_a_symlink_out_of_the_project_is_refused_and_never_read(tmp_path: Path, outside: Path) -> None:
    path = spec(tmp_path, "requirements: [linked.in, sub/r.in]\n")
    (path.parent / "linked.in").symlink_to(outside)
    (path.parent / "sub").symlink_to(tmp_path)  # a folder link out
    (tmp_path / "r.in").write_text(MARKER)
    found = issues(path)
    assert {field for _, field, _, _ in found} == {"requirements[0]", "requirements[1]"}
    assert all("outside the project" in message and MARKER not in message for *_, message in found)


def test_a_symlink_inside_the_project_is_fine(tmp_path: Path) -> None:
    path = spec(tmp_path, "requirements: [linked.in]\n", {"real/r.in": "numpy\n"})
    (path.parent / "linked.in").symlink_to(path.parent / "real" / "r.in")
    assert load_spec_text(path.read_text(), str(path), path.parent).requirements == ["linked.in"]


@pytest.mark.parametrize(
    "line",
    [
        "-r /etc/shadow",
        "-r ../../x.in",
        "-r${HOME}/x",
        "--requirement=/x",
        "-c ../c.txt",
        "-e .",
        "--editable=/srv/pkg",
        "--find-links /tmp",
        "-i file:///srv/simple",
        "pkg @ file:///etc/shadow",
        "pkg @ ../pkg",
        "./local",
        "/abs/pkg.whl",
        "~/pkg",
        "foo/bar",
        "--config-file x",
        "numpy==${VERSION}",
        "-r missing.in",
    ],
)
def test_requirement_lines_that_read_outside_are_refused_by_file_and_line(tmp_path: Path, line: str) -> None:
    path = spec(tmp_path, "", {"requirements.in": f"numpy==1.26\n{line}\n"})
    found = issues(path)
    assert [(Path(file).name, line_no) for file, _, line_no, _ in found] == [("requirements.in", 2)], found


def test_requirement_lines_people_write_pass(tmp_path: Path) -> None:
    text = (
        "# pinned\nnumpy==1.26  # comment\n-r more/extra.in\n--extra-index-url https://download.pytorch.org/whl\n"
        "torch==2.3.0+cpu ; python_version >= '3.10'\nfoo[bar,baz]>=1,<2\npkg @ https://h.example/p.whl\n"
        "--hash=sha256:abc\n--pre\n--only-binary :all:\nsklearn \\\n  >=1.0\n"
    )
    path = spec(tmp_path, "", {"requirements.in": text, "more/extra.in": "-r ../requirements.in\npandas\n"})
    assert requirement_problems(path.parent, ["requirements.in"]) == []
    load_spec_text(path.read_text(), str(path), path.parent)


def test_the_resolver_is_never_run_on_a_line_that_reads_outside(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "requirements.in").write_text(f"-r {outside}\n")
    with pytest.raises(LockError) as refused:
        resolve_python(
            [tmp_path / "requirements.in"],
            [],
            python="3.11",
            arch="x86_64",
            glibc="2.36",
            exclude_newer="2024-01-01T00:00:00Z",
            root=tmp_path,
        )
    assert "requirements.in:1" in refused.value.message and MARKER not in refused.value.render()


# ---- the CLI refuses before uploading ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/shadow", "../../etc/shadow"])
def test_collect_project_refuses_paths_out_before_sending(tmp_path: Path, name: str) -> None:
    path = spec(tmp_path, f"requirements: ['{name}']\n")
    with pytest.raises(SpecInvalid) as refused:
        collect_project(path)
    assert refused.value.issues[0].field == "requirements[0]" and refused.value.issues[0].line == 2


def test_collect_project_refuses_a_symlinked_requirement_or_lock_out(tmp_path: Path, outside: Path) -> None:
    path = spec(tmp_path, "requirements: [r.in]\n")
    (path.parent / "r.in").symlink_to(outside)
    with pytest.raises(SpecInvalid) as refused:
        collect_project(path)
    assert "outside the project" in refused.value.render() and MARKER not in refused.value.render()
    (path.parent / "r.in").unlink()
    (path.parent / "r.in").write_text("numpy\n")
    (path.parent / "devenv.lock").symlink_to(outside)
    with pytest.raises(SpecInvalid):
        collect_project(path)


def test_collect_project_sends_files_inside(tmp_path: Path) -> None:
    path = spec(tmp_path, "requirements: [sub/r.in]\n", {"sub/r.in": "numpy\n"})
    assert collect_project(path)["files"]["sub/r.in"] == "numpy\n"


# ---- uploads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "files",
    [
        {"devenv.yaml": "", "a\x00b": ""},
        {"devenv.yaml": "", "r.in\n": ""},
        {"devenv.yaml": "", "r\x1b.in": ""},
        {"devenv.yaml": "", "x" * 256: ""},
        {"devenv.yaml": "", "/".join(["d" * 200] * 6): ""},
        {"devenv.yaml": "", "x": "", "x/y": ""},
        {"devenv.yaml": "", "a/b": "", "a/b/c/d": ""},
        {"devenv.yaml": "", "r\ud800.in": ""},
        {"devenv.yaml": "", "r.in": "text \udcff"},
        {"devenv.yaml": "", "../r.in": ""},
        {"devenv.yaml": "", "/etc/r.in": ""},
        {"devenv.yaml": "", "": ""},
        {"devenv.yaml": "", "r.in": 5},
        {"devenv.yaml": "", **{f"f{i}": "x" * (3 * 2**20) for i in range(6)}},
        {"devenv.yaml": "\ud800"},
        {"other.yaml": ""},
    ],
)
def test_check_upload_refuses_with_a_usage_error(files: dict) -> None:
    with pytest.raises(UsageError) as refused:
        check_upload("devenv.yaml", files)
    assert refused.value.exit_code == 2 and len(refused.value.message) < 400


@pytest.mark.parametrize("spec_path", ["dev\x00env.yaml", "devenv.yaml\n", "\ud800/devenv.yaml", "x" * 2000])
def test_check_upload_refuses_an_odd_spec_path(spec_path: str) -> None:
    with pytest.raises(UsageError):
        check_upload(spec_path, {"devenv.yaml": ""})


def test_check_upload_keeps_a_plain_project() -> None:
    upload = check_upload("ml/devenv.yaml", {"devenv.yaml": "name: x\n", "req/a.in": "numpy\n", "é.in": ""})
    assert set(upload.files) == {"devenv.yaml", "req/a.in", "é.in"}


def projects(tmp_path: Path, folders: HostFolders | None = None) -> Projects:
    root = tmp_path / "home" / "projects"
    root.mkdir(parents=True, exist_ok=True)
    return Projects(sessionmaker(), root, folders)


def leftovers(root: Path) -> list[str]:
    return [path.name for path in root.iterdir() if path.name.startswith((".unpack-", ".lock-"))]


def test_unpack_and_lock_leave_nothing_behind_on_failure(tmp_path: Path) -> None:
    store = projects(tmp_path)
    clash = Upload("devenv.yaml", {"devenv.yaml": "name: x\n", "x": "", "x/y": ""})  # as an old daemon stored it
    with pytest.raises(UsageError, match=r"'x/y'|'x'"):
        store.unpack(clash)
    surrogate = Upload("devenv.yaml", {"devenv.yaml": "name: x\n", "r.in": "\ud800"})
    with pytest.raises(UsageError, match=r"r\.in"):
        store.unpack(surrogate)
    good = Upload("devenv.yaml", {"devenv.yaml": "name: demo\nrequirements: []\njupyter: false\n"})

    def failing_lock(_project: object) -> None:
        raise RuntimeError("the resolver broke")

    with pytest.raises(RuntimeError):
        store.resolve_lock(good, failing_lock)
    assert leftovers(store.root) == []
    (store.root / ".unpack-stale").mkdir()
    (store.root / ".lock-stale").mkdir()
    assert leftovers(projects(tmp_path).root) == []  # a daemon killed mid-unpack: cleared at the next start


# ---- host folders -----------------------------------------------------------------------------------


def test_host_folders_refuse_the_engine_socket_the_daemon_home_and_unlisted_folders(tmp_path: Path) -> None:
    home = tmp_path / "dvd"
    folders = HostFolders.make(["/tmp", "/srv/data", "/var"], home)
    refused = [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run",
        "/run",
        "/",
        "/tmp/../etc",
        "/etc",
        "/srv/data/x.sock",
        "/srv",
        "/srv/data2",
        str(home),
        f"{home}/projects",
        "relative/x",
        "/srv/data/\x00",
        "/tmp/x\n",
    ]
    for path in refused:
        assert folders.refusal(path) is not None, path
    assert folders.refusal(str(tmp_path)) is not None  # it holds the daemon's home
    for path in ["/srv/data", "/srv/data/", "/srv/data/dvc", "//srv/data/dvc", "/srv/./data/x"]:
        assert folders.refusal(path) is None, path
    message, fix = HostFolders.make([], home).refusal("/srv/data/dvc") or ("", "")
    assert "allowed_host_folders: none" in message and "daemon.yaml" in fix


def test_host_folders_resolve_symlinks_when_the_engine_is_local(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "etc").symlink_to("/etc")
    (allowed / "dvc").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(allowed / "engine"))  # a socket that does not say so by its name
    folders = HostFolders.make([str(allowed)], tmp_path / "home")
    assert folders.refusal(str(allowed / "etc")) is None  # lexically fine: why `up` resolves it when local
    assert folders.refusal(str(allowed / "etc"), real=True) is not None
    assert folders.refusal(str(allowed / "engine"), real=True) is not None
    assert folders.refusal(str(allowed / "dvc"), real=True) is None
    listener.close()


def test_allowed_host_folders_come_from_daemon_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVENV_ENGINE", "unix:///srv/engine/podman.socket")
    config = tmp_path / "daemon.yaml"
    assert load_host_folders(config, tmp_path).allowed == ()
    config.write_text("allowed_host_folders: [/srv/dvc]\nbackends: {}\n")
    folders = load_host_folders(config, tmp_path)
    assert folders.refusal("/srv/dvc/x") is None and folders.refusal("/srv/engine/podman.socket") is not None
    for bad in ("relative", "[srv]", "[/a/../b]"):
        config.write_text(f"allowed_host_folders: {bad}\n")
        with pytest.raises(UsageError, match="allowed_host_folders"):
            load_host_folders(config, tmp_path)


class _Engine:
    def __init__(self, url: str) -> None:
        self.url = url


def test_up_refuses_a_host_folder_naming_data_remote_and_the_fix(tmp_path: Path) -> None:
    store = projects(tmp_path, HostFolders.make([str(tmp_path / "data")], tmp_path / "home"))
    text = "name: demo\nrequirements: []\nrepo: {url: 'https://h/o/r.git'}\ndata:\n  remote: {remote}\n"
    for remote in ("/var/run/docker.sock", "/tmp/../etc", str(tmp_path / "home"), "/etc"):
        upload = check_upload("devenv.yaml", {"devenv.yaml": text.replace("{remote}", remote)})
        with pytest.raises(SpecInvalid) as refused:
            store.open(upload)
        issue = refused.value.issues[0]
        assert (issue.field, issue.line) == ("data.remote", 5), issue
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to("/etc")
    allowed = check_upload("devenv.yaml", {"devenv.yaml": text.replace("{remote}", str(tmp_path / "data/dvc"))})
    project = store.open(allowed)
    assert store.data_binds(project.spec, _Engine("ssh://me@far")) == {
        str(tmp_path / "data/dvc"): str(tmp_path / "data/dvc")
    }
    linked = check_upload("devenv.yaml", {"devenv.yaml": text.replace("{remote}", str(tmp_path / "data/link"))})
    store.check_host_folders(linked, _Engine("ssh://me@far"))  # not this machine's path: not resolved here
    with pytest.raises(SpecInvalid, match="problem"):
        store.check_host_folders(linked, _Engine("unix:///var/run/docker.sock"))
    with pytest.raises(SpecInvalid):
        store.data_binds(store.open(linked).spec, _Engine("unix:///var/run/docker.sock"))


# ---- units, names, YAML --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "autostop: " + "1" + "0" * 400 + "m",
        "autostop: '" + "9" * 40 + "'",
        "autostop: " + "9" * 30,
        "autostop: " + "9" * 5000,
        "resources: {memory: '" + "9" * 400 + "Gi'}",
        "resources: {memory: " + "9" * 30 + "}",
        "resources: {gpu: 'A100:" + "9" * 40 + "'}",
        "resources: {gpu: 99999}",
        "resources: {cpu: .inf}",
        "resources: {cpu: .nan}",
        "resources: {cpu: 1e400}",
    ],
)
def test_unit_overflows_are_spec_errors_naming_the_field(tmp_path: Path, body: str) -> None:
    found = issues(spec(tmp_path, body + "\n"))
    assert found and all(len(message) < 300 for *_, message in found)


def test_parsers_refuse_overflow_with_value_errors() -> None:
    for call in (
        lambda: parse_duration(10**50),
        lambda: parse_duration("1" + "0" * 400 + "m"),
        lambda: parse_size("9" * 400),
        lambda: parse_size(2**70),
        lambda: parse_gpu(10**40),
        lambda: parse_duration("٣m"),
        lambda: parse_gpu("²"),
    ):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize(
    "body",
    [
        r'name: "demo\n"',
        r"name: x" + "\n" + r'secrets: ["TOKEN\n"]',
        "name: x\n" + r'apt: ["git\n"]',
        "name: x\n" + r'env: {"A\n": x}',
        "name: x\n" + r'repo: {url: "https://h/r.git", path: "p\n"}',
    ],
)
def test_names_are_matched_whole_a_trailing_newline_is_refused(tmp_path: Path, body: str) -> None:
    path = spec(tmp_path, "")
    path.write_text(body + "\n")
    assert issues(path)


def test_alias_bombs_and_huge_specs_are_refused_in_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "devenv.yaml"
    for text in (BOMB, "a: &a [*a]\nname: x\n", "name: x\nsetup: ['" + "x" * (2 * 2**20) + "']\n"):
        path.write_text(text)
        started = time.monotonic()
        with pytest.raises(SpecInvalid) as refused:
            load_spec_text(text, str(path), tmp_path)
        with pytest.raises(SpecInvalid):
            collect_project(path)
        with pytest.raises(SpecInvalid):
            spec_fields({"spec_path": "devenv.yaml", "files": {"devenv.yaml": text}})
        assert time.monotonic() - started < 1.0
        assert refused.value.issues[0].file == str(path)
    (tmp_path / "devenv.lock").write_text(BOMB)
    with pytest.raises(LockMissing):
        read_lock(tmp_path / "devenv.lock")
    yaml.safe_load("a: &a [1, 2]\nb: *a\n")  # a few aliases are fine, as ever


def test_name_and_path_rules() -> None:
    assert name_problem("ok/é.in") is None and project_path_problem("sub/r.in") is None
    assert name_problem("a\u2028b") is None  # a separator is not a control character: it is shown escaped


# ---- init writes only what it checked ---------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    capsys.readouterr()
    return exited.value.code or 0


@pytest.mark.parametrize("name", ["x\nbackend: evil", "x: y", "Evil", "x" * 64, "\\g<0>"])
def test_init_refuses_a_name_that_would_inject_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    folder = tmp_path / "new"
    assert run_cli(capsys, "init", "--template", "minimal", "--name", name, "--dir", str(folder)) == 2
    assert not folder.exists()
    devcontainer = tmp_path / "devcontainer.json"
    devcontainer.write_text('{"image": "python:3.11"}')
    assert run_cli(capsys, "init", "--from", str(devcontainer), "--name", name, "--dir", str(folder)) == 2
    assert not folder.exists()


def test_init_with_a_good_name_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init", "--template", "minimal", "--name", "good-name", "--dir", str(tmp_path)) == 0
    assert yaml.safe_load((tmp_path / "devenv.yaml").read_text())["name"] == "good-name"


def test_a_devcontainer_dockerfile_outside_the_project_is_not_read(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "proj" / ".devcontainer"
    folder.mkdir(parents=True)
    outside.write_text(f"FROM x\nRUN echo {MARKER}\n")
    (folder / "devcontainer.json").write_text('{"build": {"dockerfile": "../../secrets.key"}}')
    data, warnings = import_devcontainer(folder / "devcontainer.json")
    assert MARKER not in str(data) and any("outside the project" in warning for warning in warnings)


@pytest.mark.parametrize(
    "body",
    [
        r'env: {A: "\ud800"}',
        r'setup: ["echo \udcff"]',
        r'ci: {test: "a\0b"}',
        r'env: {"\ud800": x}',
        r'tracking: {wandb: {project: "\ud800"}}',
    ],
)
def test_escaped_surrogates_and_nul_are_refused_where_they_are(tmp_path: Path, body: str) -> None:
    """YAML escapes write them in plain ASCII; no image, engine or store takes them."""
    found = issues(spec(tmp_path, body + "\n"))
    assert any(line == 2 and ("surrogate" in message or "NUL" in message) for _, _, line, message in found), found


def test_collect_project_sends_the_files_a_requirements_file_includes(tmp_path: Path, outside: Path) -> None:
    """keras's requirements.txt says `-r requirements-common.txt`: the daemon must get that file too."""
    path = spec(
        tmp_path,
        "requirements: [requirements.txt]\n",
        {
            "requirements.txt": "-r requirements-common.txt\n-c constraints/pins.txt\n-r missing.txt\n-r escape.txt\n",
            "requirements-common.txt": "numpy\n-r nested/more.txt\n",
            "nested/more.txt": "-r ../requirements-common.txt\npandas\n",  # a cycle ends
            "constraints/pins.txt": "numpy<3\n",
        },
    )
    (path.parent / "escape.txt").symlink_to(outside)
    sent = collect_project(path)["files"]
    assert set(sent) == {
        "devenv.yaml",
        "requirements.txt",
        "requirements-common.txt",
        "nested/more.txt",
        "constraints/pins.txt",
    }
    assert MARKER not in "".join(sent.values())  # the symlink out is never read
    problems = requirement_problems(path.parent, ["requirements.txt"])
    assert [problem.message for problem in problems if problem.line == 3] == [
        "missing.txt was not sent with the project: list it under requirements in devenv.yaml"
    ]
