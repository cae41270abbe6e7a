"""A fresh Debian machine has no debootstrap: devenv installs it with apt-get, saying so, or names the package.

apt-get here is a stand-in script on PATH (installing the real package would change this machine); the
code under test runs it as a real process and finds the tool it installed as it would find Debian's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devenv.build.bootstrap import ensure_debootstrap
from devenv.errors import DevenvError, ToolMissing

APT_GET = """#!/bin/sh
echo "$@" >> {log}
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> {log}
if [ "$1" = install ]; then
    {fail}
    printf '#!/bin/sh\\necho debootstrap\\n' > {bin}/debootstrap && chmod +x {bin}/debootstrap
fi
"""


def stand_in(tmp_path: Path, *, fail: bool = False) -> tuple[Path, Path]:
    tools, installed = tmp_path / "tools", tmp_path / "installed"
    tools.mkdir()
    installed.mkdir()
    log = tmp_path / "apt.log"
    failing = "echo 'E: Unable to locate package' && exit 100" if fail else ""
    script = APT_GET.format(log=log, bin=installed, fail=failing)
    (tools / "apt-get").write_text(script)
    (tools / "apt-get").chmod(0o755)
    return tools, installed


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these checks run as root, as CI and the README's first command do")


def test_a_missing_debootstrap_is_installed_with_apt_get_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_root: None
) -> None:
    tools, installed = stand_in(tmp_path)
    monkeypatch.setenv("PATH", f"{tools}:{installed}:/bin")  # no real debootstrap on it
    said: list[str] = []
    path = ensure_debootstrap(lambda event: said.append(event.message))
    assert path == str(installed / "debootstrap")
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == [
        "update -qq",
        "DEBIAN_FRONTEND=noninteractive",
        "install -y -qq --no-install-recommends debootstrap",
        "DEBIAN_FRONTEND=noninteractive",
    ]
    assert any("installing Debian's debootstrap package" in line for line in said)


def test_an_installed_debootstrap_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools, installed = stand_in(tmp_path)
    (installed / "debootstrap").write_text("#!/bin/sh\n")
    (installed / "debootstrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{installed}:/bin")
    assert ensure_debootstrap() == str(installed / "debootstrap")
    assert not (tmp_path / "apt.log").exists()  # apt-get never ran


def test_turned_off_or_without_apt_it_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools, installed = stand_in(tmp_path)
    monkeypatch.setenv("PATH", f"{tools}:{installed}:/bin")
    monkeypatch.setenv("DEVENV_INSTALL_TOOLS", "0")
    with pytest.raises(ToolMissing) as caught:
        ensure_debootstrap()
    assert "apt-get install debootstrap" in (caught.value.hint or "")
    assert not (tmp_path / "apt.log").exists()
    monkeypatch.delenv("DEVENV_INSTALL_TOOLS")
    monkeypatch.setenv("PATH", f"{installed}:/nonexistent")  # no apt-get either
    with pytest.raises(ToolMissing):
        ensure_debootstrap()


def test_a_failed_install_says_what_apt_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_root: None) -> None:
    tools, installed = stand_in(tmp_path, fail=True)
    monkeypatch.setenv("PATH", f"{tools}:{installed}:/bin")
    with pytest.raises(DevenvError) as caught:
        ensure_debootstrap()
    assert "apt-get install" in caught.value.message and "Unable to locate package" in caught.value.message
    assert not (installed / "debootstrap").exists()
