"""The SSH certificate authority with OpenSSH's own ssh-keygen (no engine needed)."""

from __future__ import annotations

import datetime as dt
import stat
import subprocess
from pathlib import Path

import pytest

from devenv.access.ssh_ca import SshCertificateAuthority, check_public_key
from devenv.errors import UsageError


@pytest.fixture
def ca(tmp_path: Path) -> SshCertificateAuthority:
    return SshCertificateAuthority(tmp_path / "ca").ensure()


@pytest.fixture
def user_key(tmp_path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    return tmp_path / "id"


def inspect(text: str, tmp_path: Path) -> str:
    path = tmp_path / "inspect-cert.pub"
    path.write_text(text + "\n")
    return subprocess.run(["ssh-keygen", "-L", "-f", str(path)], check=True, capture_output=True, text=True).stdout


def test_the_ca_key_is_private_and_made_once(ca: SshCertificateAuthority) -> None:
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    first = ca.public_key
    assert first.startswith("ssh-ed25519 ")
    assert SshCertificateAuthority(ca.folder).ensure().public_key == first


def test_a_certificate_carries_id_serial_principals_and_a_short_validity(
    ca: SshCertificateAuthority, user_key: Path, tmp_path: Path
) -> None:
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cert = ca.sign(
        user_key.with_suffix(".pub").read_text(),
        key_id="alice",
        principals=["ws:demo"],
        serial=42,
        valid_for=dt.timedelta(hours=1),
        now=now,
    )
    shown = inspect(cert.text, tmp_path)
    assert 'Key ID: "alice"' in shown and "Serial: 42" in shown and "ws:demo" in shown
    assert "from 2030-01-02T03:03:05 to 2030-01-02T04:04:05" in shown
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(ca.folder / "ssh_ca.pub")], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    assert f"Signing CA: ED25519 {fingerprint}" in shown
    assert cert.valid_before - cert.valid_after == dt.timedelta(hours=1, minutes=1)


def test_the_krl_revokes_exactly_what_it_lists(ca: SshCertificateAuthority, user_key: Path, tmp_path: Path) -> None:
    public = user_key.with_suffix(".pub").read_text()
    revoked = ca.sign(public, key_id="bob", principals=["ws:a"], serial=9)
    kept = ca.sign(public, key_id="carol", principals=["ws:a"], serial=10)
    by_id = ca.sign(public, key_id="dave", principals=["ws:a"], serial=11)
    krl = tmp_path / "revoked.krl"
    krl.write_bytes(ca.revocation_list(serials=[9], key_ids=["dave"]))

    def is_revoked(text: str) -> bool:
        path = tmp_path / "check-cert.pub"
        path.write_text(text + "\n")
        return subprocess.run(["ssh-keygen", "-Q", "-f", str(krl), str(path)], capture_output=True).returncode != 0

    assert is_revoked(revoked.text) and is_revoked(by_id.text) and not is_revoked(kept.text)
    krl.write_bytes(ca.revocation_list())  # empty, valid: revokes nothing
    assert not is_revoked(revoked.text)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not a key",
        "ssh-ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
        "ssh-dss AAAAB3NzaC1kc3M= old",
        "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
    ],
)
def test_bad_public_keys_are_refused_with_a_hint(bad: str) -> None:
    with pytest.raises(UsageError) as refused:
        check_public_key(bad)
    assert "key" in refused.value.message


def test_bad_principals_and_ids_are_refused(ca: SshCertificateAuthority, user_key: Path) -> None:
    public = user_key.with_suffix(".pub").read_text()
    for principals, key_id in ([[], "a"], [["ws:a,ws:b"], "a"], [["ws:a"], "a b"], [["ws:a"], ""]):
        with pytest.raises(UsageError):
            ca.sign(public, key_id=key_id, principals=principals, serial=1)
    with pytest.raises(UsageError):
        ca.sign(public, key_id="a", principals=["ws:a"], serial=1, valid_for=dt.timedelta(0))
