"""Dotfiles: what a person may set (URLs, install paths), that each sees only their own, the CLI, and the
clone step's script run for real with bash and git in a temporary home (the workspace faked behind `exec`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devenv.backends.base import ExecStream, Handle
from devenv.cli.main import main
from devenv.client import Client
from devenv.daemon.services import dotfiles_step
from devenv.daemon.services.access import Caller
from devenv.daemon.services.dotfiles import DotfilesRepo, DotfilesService, check_install, check_url, lookup
from devenv.daemon.services.setup import StepContext
from devenv.daemon.store.tables import Workspace
from devenv.errors import UsageError
from devenv.spec.models import Spec
from devenv.testing.daemon import FakeDaemon, fake_daemon
from devenv.testing.served import served_fake_daemon
from devenv.versioning.steps import StepResult
from harness.git_server import git, make_repo

GOOD_URLS = [
    "https://github.com/me/dotfiles.git",
    "https://git.example.com:8443/me/dots",
    "http://host.docker.internal:8080/dots.git",
    "ssh://git@github.com/me/dotfiles.git",
    "git://example.com/dots.git",
    "git@github.com:me/dotfiles.git",
    "github.com:me/dotfiles",
]
BAD_URLS = {
    "": "is empty",
    "   ": "is empty",
    "/home/me/dotfiles": "not a clone URL",
    "./dots": "not a clone URL",
    "~/dots": "not a clone URL",
    "file:///srv/dots.git": "scheme 'file'",
    "ftp://x.org/d.git": "scheme 'ftp'",
    "https://github.com": "names no repository",
    "https:///me/dots.git": "names no host",
    "https://github.com/me/dots.git\nx": "control characters",
    "https://git hub.com/x": "spaces",
    "-uhttps://x/y": "starts with '-'",
    "https://h:99999/x": "not a well-formed URL",
    "https://" + "a" * 2100 + "/x": "at most 2048",
    "git@github.com:/abs": "not a clone URL",
}
CREDENTIALED = [
    "https://me:hunter2-secret@github.com/me/dots.git",
    "https://ghp_tok3nSECRET@github.com/me/dots.git",
    "ssh://git:hunter2-secret@github.com/me/dots.git",
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_clone_urls_are_kept(url: str) -> None:
    assert check_url(f"  {url} ") == url


@pytest.mark.parametrize(("url", "said"), BAD_URLS.items())
def test_bad_urls_are_refused_naming_the_field(url: str, said: str) -> None:
    with pytest.raises(UsageError) as refused:
        check_url(url)
    assert refused.value.message.startswith("dotfiles url: ") and said in refused.value.message
    assert refused.value.data == {"field": "url"} and refused.value.hint


@pytest.mark.parametrize("url", CREDENTIALED)
def test_credentials_in_the_url_are_refused_and_never_echoed(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        check_url(url)
    assert "password or token" in refused.value.message
    assert "SECRET" not in refused.value.render().upper().replace("DOTFILES", "")


@pytest.mark.parametrize(
    ("install", "kept"),
    [(None, None), ("install.sh", "install.sh"), ("./script/setup", "script/setup"), (" bin/go ", "bin/go")],
)
def test_install_paths_inside_the_repo_are_kept(install: str | None, kept: str | None) -> None:
    assert check_install(install) == kept


@pytest.mark.parametrize(
    "install", ["", "../escape.sh", "a/../../b", "/etc/passwd", "bin/", ".", "a\\b", "x\ny", "s" * 300]
)
def test_install_paths_outside_or_odd_are_refused(install: str) -> None:
    with pytest.raises(UsageError) as refused:
        check_install(install)
    assert refused.value.message.startswith("dotfiles install: ") and refused.value.data == {"field": "install"}


# -- the API: each person their own ------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDaemon]:
    made = fake_daemon(tmp_path / "daemon")
    yield made
    made.daemon.scheduler.shutdown()


def test_each_person_sees_and_changes_only_their_own(fake: FakeDaemon) -> None:
    tokens = fake.daemon.services.tokens
    alice = {"Authorization": f"Bearer {tokens.create('alice')}"}
    bob = {"Authorization": f"Bearer {tokens.create('bob')}"}
    with TestClient(fake.app) as api:
        assert api.get("/v1/dotfiles", headers=alice).json()["url"] is None
        put = api.put("/v1/dotfiles", json={"url": GOOD_URLS[0], "install": "script/setup"}, headers=alice)
        assert put.status_code == 200 and put.json()["install"] == "script/setup", put.text
        assert api.get("/v1/dotfiles", headers=bob).json() == {
            "url": None,
            "install": None,
            "updated_at": None,
            "note": None,
        }
        assert api.put("/v1/dotfiles", json={"url": GOOD_URLS[5]}, headers=bob).status_code == 200
        assert "ssh URL is not cloned" in api.get("/v1/dotfiles", headers=bob).json()["note"]
        assert api.delete("/v1/dotfiles", headers=bob).json() == {"removed": True}
        assert api.delete("/v1/dotfiles", headers=bob).json() == {"removed": False}
        shown = api.get("/v1/dotfiles", headers=alice).json()
        assert (shown["url"], shown["install"]) == (GOOD_URLS[0], "script/setup") and shown["updated_at"] > 0
        events = [item["message"] for item in api.get("/v1/events", headers=bob).json()["items"]]
        assert not any(GOOD_URLS[0] in message for message in events)  # alice's setting is not told to bob
        assert api.get("/v1/dotfiles").status_code == 401


def test_bad_input_is_a_4xx_naming_the_field(fake: FakeDaemon) -> None:
    with TestClient(fake.app, headers=fake.headers) as api:
        for body, field in (
            ({"url": CREDENTIALED[0]}, "url"),
            ({"url": "/srv/dots"}, "url"),
            ({"url": GOOD_URLS[0], "install": "../x"}, "install"),
        ):
            answer = api.put("/v1/dotfiles", json=body, headers=fake.headers)
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"] if "error" in answer.json() else answer.json()
            assert error["code"] == "usage" and error["message"].startswith(f"dotfiles {field}: ")
            assert error["data"] == {"field": field} and "hunter2" not in answer.text
        assert api.put("/v1/dotfiles", json={}, headers=fake.headers).status_code in (400, 422)
        assert api.get("/v1/dotfiles", headers=fake.headers).json()["url"] is None  # nothing was kept


def test_the_cli_sets_shows_and_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEVENV_DEBUG", raising=False)

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out = capsys.readouterr()
        return exited.value.code or 0, out.out, out.err  # type: ignore[return-value]

    with served_fake_daemon(tmp_path / "d") as (_fake, _client):
        monkeypatch.setenv("DEVENV_HOST", f"unix://{tmp_path / 'd' / 'd.sock'}")
        assert "no dotfiles repository set" in cli("dotfiles")[1]
        code, out, _ = cli("dotfiles", "set", GOOD_URLS[0], "--install", "install.sh")
        assert code == 0 and f"dotfiles set to {GOOD_URLS[0]} (install: install.sh)" in out
        assert GOOD_URLS[0] in cli("dotfiles")[1]
        assert '"install": "install.sh"' in cli("dotfiles", "--json")[1]
        code, out, err = cli("dotfiles", "set", CREDENTIALED[0])
        assert code == 2 and "dotfiles url:" in err and "hunter2" not in out + err and "Traceback" not in err
        code, _, err = cli("dotfiles", "set", GOOD_URLS[5])
        assert code == 0 and "https URL" in err  # told at once that ssh is not cloned at start
        assert "removed" in cli("dotfiles", "rm")[1]
        assert "no dotfiles repository set" in cli("dotfiles")[1]


# -- the step's script, run for real in a temporary home --------------------------------------------


class LocalShell:
    """Stands in for a workspace's `exec`: runs the setup script with bash here, HOME a temporary folder."""

    def __init__(self, home: Path, path: str | None = None) -> None:
        self.home = home
        self.path = path or os.environ["PATH"]  # another PATH: an image without git
        self.scripts: list[str] = []

    def exec(
        self,
        handle: Handle,
        argv: list[str],
        *,
        user: str = "dev",
        env: Mapping[str, str] | None = None,
        workdir: str = "/",
    ) -> ExecStream:
        self.scripts.append(argv[-1])
        env = {
            "PATH": self.path,
            "HOME": str(self.home),
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        }
        done = subprocess.run(
            [shutil.which("bash") or "bash", "-c", argv[-1]], cwd="/", capture_output=True, timeout=120, env=env
        )
        return ExecStream(iter([("stdout", done.stdout + done.stderr)]), lambda: done.returncode)


COUNT = b'echo run >> "$HOME/installed.count"\n'


def repo(tmp_path: Path, name: str, files: dict[str, bytes], executable: tuple[str, ...] = ()) -> str:
    work = tmp_path / "work" / name
    make_repo(work, tmp_path / "served", name, files)
    if executable:
        git(work, "update-index", "--chmod=+x", *executable)
        git(work, "commit", "--quiet", "--message", "executable")
        git(work, "push", "--quiet", "origin", "HEAD")
    return str(tmp_path / "served" / f"{name}.git")


def install(shell: LocalShell, url: str, script: str | None = None) -> tuple[StepResult, dict[str, Any], list[str]]:
    lines: list[str] = []
    result, found = dotfiles_step.install(
        shell,
        Handle.for_workspace("w"),
        DotfilesRepo(url, script),  # type: ignore[arg-type]
        lines.append,
    )
    return result, found, lines


def test_install_sh_runs_once_per_home(tmp_path: Path) -> None:
    url = repo(tmp_path, "dots", {"install.sh": b"echo installing\n" + COUNT, "setup": b"exit 9\n"})
    shell = LocalShell(tmp_path / "home")
    shell.home.mkdir()
    result, found, lines = install(shell, url)
    assert (result.status, result.ok, found["script"]) == ("cloned", True, "install.sh"), result
    assert "ran install.sh" in result.message and "installing" in lines  # its output streams line by line
    assert (shell.home / ".dotfiles" / ".git").is_dir() and (shell.home / "installed.count").read_text() == "run\n"
    assert not (shell.home / ".devenv-dotfiles-clone").exists()
    again, _, _ = install(shell, url)
    assert (again.status, again.ok) == ("present", True)
    assert (shell.home / "installed.count").read_text() == "run\n"  # not run again in the same home
    other = LocalShell(tmp_path / "other")  # positive control: a fresh home runs it
    other.home.mkdir()
    assert install(other, url)[0].status == "cloned" and (other.home / "installed.count").read_text() == "run\n"


def test_codespaces_order_and_an_executable_script(tmp_path: Path) -> None:
    url = repo(
        tmp_path,
        "dots",
        {"script/bootstrap": b'#!/bin/sh\necho boot > "$HOME/which"\n', "setup.sh": b'echo setup > "$HOME/which"\n'},
        executable=("script/bootstrap",),
    )
    shell = LocalShell(tmp_path / "home")
    shell.home.mkdir()
    result, found, _ = install(shell, url)
    assert found["script"] == "script/bootstrap" and (shell.home / "which").read_text() == "boot\n", result
    named = LocalShell(tmp_path / "named")  # --install overrides the order
    named.home.mkdir()
    assert install(named, url, "setup.sh")[1]["script"] == "setup.sh"
    assert (named.home / "which").read_text() == "setup\n"


def test_without_a_script_dotfiles_are_linked_and_the_old_kept(tmp_path: Path) -> None:
    url = repo(
        tmp_path,
        "dots",
        {
            ".bashrc": b"alias ll='ls -l'\n",
            ".vimrc": b"set nu\n",
            ".config/x": b"y\n",
            ".gitignore": b"*.swp\n",
            "README.md": b"mine\n",
        },
    )
    shell = LocalShell(tmp_path / "home")
    (shell.home / ".config").mkdir(parents=True)
    (shell.home / ".bashrc").write_text("# the image's\n")
    result, found, _ = install(shell, url)
    assert result.ok and found["linked"] == [".bashrc", ".vimrc"] and found["kept"] == [".bashrc.devenv-orig"]
    assert found["skipped"] == [".config (the folder ~/.config is there)"] and "skipped .config" in result.message
    assert (shell.home / ".bashrc").resolve() == (shell.home / ".dotfiles" / ".bashrc").resolve()
    assert (shell.home / ".bashrc.devenv-orig").read_text() == "# the image's\n"
    assert not (shell.home / ".gitignore").exists() and not (shell.home / ".git").exists()
    assert not (shell.home / "README.md").exists()


def test_failures_say_why_and_leave_the_home_clean(tmp_path: Path) -> None:
    shell = LocalShell(tmp_path / "home")
    shell.home.mkdir()
    missing, _, _ = install(shell, str(tmp_path / "no-such.git"))
    assert (missing.status, missing.ok) == ("failed", False) and "could not clone" in missing.message
    assert missing.hint and "tried again" in missing.hint and sorted(os.listdir(shell.home)) == []

    failing = repo(tmp_path, "failing", {"install": b"echo half\nexit 3\n"})
    result, found, _ = install(shell, failing)
    assert (result.status, result.ok) == ("install_failed", False) and "install exited 3" in result.message
    assert result.hint and "cd ~/.dotfiles && bash install" in result.hint and found["script"] == "install"
    assert (shell.home / ".dotfiles" / "install").exists()  # the clone stays: the person's to fix

    fresh = LocalShell(tmp_path / "fresh")
    fresh.home.mkdir()
    absent, _, _ = install(fresh, failing, "bin/nope.sh")
    assert absent.status == "install_failed" and "has no bin/nope.sh" in absent.message


def test_an_ssh_url_is_not_cloned_at_start_and_the_https_one_is_named(tmp_path: Path) -> None:
    shell = LocalShell(tmp_path / "home")
    shell.home.mkdir()
    result, _, _ = install(shell, "git@github.com:me/dots.git")
    assert (result.status, result.ok) == ("unsupported", False) and "ssh URL" in result.message
    assert result.hint and "devenv dotfiles set https://github.com/me/dots.git" in result.hint
    assert "git clone" not in shell.scripts[0] and os.listdir(shell.home) == []


# -- when the step runs at all ---------------------------------------------------------------------


def context(
    fake: FakeDaemon, shell: LocalShell, *, spec: Spec | None, owner: str = "olive", setup: dict[str, Any] | None = None
) -> StepContext:
    def step(what: str, work: Any) -> dict[str, Any]:
        result = work(lambda line: None)
        return {"status": result.status, "ok": result.ok, "message": result.message, "hint": result.hint}

    services = fake.daemon.services
    return StepContext(
        Workspace(name="w", owner=owner),
        spec,
        shell,
        Handle.for_workspace("w"),  # type: ignore[arg-type]
        dict(setup or {}),
        lambda message: None,
        services.events,
        services.workspaces.sessions,
        services.workspaces.projects,
        step,
    )


def test_only_the_owners_setting_and_only_when_the_spec_wants_it(fake: FakeDaemon, tmp_path: Path) -> None:
    url = repo(tmp_path, "dots", {"install.sh": COUNT})
    DotfilesService(fake.daemon.services.workspaces.sessions, fake.daemon.services.events).set(
        Caller("olive"), "https://example.invalid/olive/dots.git"
    )
    sessions = fake.daemon.services.workspaces.sessions
    assert lookup(sessions, "olive") == DotfilesRepo("https://example.invalid/olive/dots.git", None)
    assert lookup(sessions, "gus") is None
    shell = LocalShell(tmp_path / "home")
    shell.home.mkdir()
    assert dotfiles_step.run(context(fake, shell, spec=Spec(name="w", dotfiles=False))) is None
    assert dotfiles_step.run(context(fake, shell, spec=None)) is None
    assert dotfiles_step.run(context(fake, shell, spec=Spec(name="w"), owner="gus")) is None  # gus set none
    assert shell.scripts == []  # not one exec for any of these

    done = {"dotfiles": {"status": "cloned", "ok": True, "url": url}}
    assert dotfiles_step.run(context(fake, shell, spec=Spec(name="w"), setup=done)) == done["dotfiles"]
    assert shell.scripts == []  # a home with its clone: no exec at all

    with sessions.begin() as session:  # the local path (not settable through the API) stands in for a server
        from devenv.daemon.store.tables import Dotfiles

        session.get(Dotfiles, "olive").url = url  # type: ignore[union-attr]
    record = dotfiles_step.run(context(fake, shell, spec=Spec(name="w")))
    assert record is not None and record["ok"] and record["url"] == url and record["script"] == "install.sh"
    assert (shell.home / "installed.count").read_text() == "run\n"


def test_the_client_round_trips(tmp_path: Path) -> None:
    with served_fake_daemon(tmp_path / "d") as (_fake, client):
        assert isinstance(client, Client)
        assert client.set_dotfiles(GOOD_URLS[0])["url"] == GOOD_URLS[0]
        with pytest.raises(UsageError):
            client.set_dotfiles("/local/path")
        assert client.dotfiles()["url"] == GOOD_URLS[0] and client.remove_dotfiles() == {"removed": True}


def test_an_image_without_git_is_told_once(fake: FakeDaemon, tmp_path: Path) -> None:
    shell = LocalShell(tmp_path / "home", path=str(tmp_path / "empty-bin"))
    shell.home.mkdir()
    result, _, _ = install(shell, repo(tmp_path, "dots", {"install.sh": COUNT}))
    assert (result.status, result.ok) == ("no_git", False) and result.hint and "apt:" in result.hint
    assert os.listdir(shell.home) == []

    DotfilesService(fake.daemon.services.workspaces.sessions, fake.daemon.services.events).set(
        Caller("olive"), "git@github.com:olive/dots.git"
    )
    told = dotfiles_step.run(context(fake, shell, spec=Spec(name="w")))
    assert told is not None and told["status"] == "unsupported" and len(shell.scripts) == 2
    assert dotfiles_step.run(context(fake, shell, spec=Spec(name="w"), setup={"dotfiles": told})) == told
    assert len(shell.scripts) == 2  # the same ssh URL: not tried (nor told) again at every start
    DotfilesService(fake.daemon.services.workspaces.sessions, fake.daemon.services.events).set(
        Caller("olive"), "https://example.invalid/olive/dots.git"
    )
    again = dotfiles_step.run(context(fake, shell, spec=Spec(name="w"), setup={"dotfiles": told}))
    assert again is not None and again["status"] == "no_git" and len(shell.scripts) == 3  # a new URL: tried
