"""daemon.yaml's `type: slurm` entries become slurm backends, spec resources.time reaches the request, and a
wrong option or value is listed beside the backend's name (the daemon still starts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devenv.backends.slurm.backend import SlurmBackend
from devenv.daemon.services.backends import load_backends
from devenv.errors import SpecInvalid
from devenv.spec import load_spec_text


@pytest.fixture
def identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "home"))
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path = tmp_path / "id_ed25519"
    path.write_bytes(key)
    return path


def write_config(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "daemon.yaml"
    config.write_text(body)
    return config


def test_a_slurm_entry_in_daemon_yaml_is_a_slurm_backend(tmp_path: Path, identity: Path) -> None:
    config = write_config(
        tmp_path,
        f"""
backends:
  cluster: {{type: slurm, login: "ssh://alice@login:2222", shared: /shared/lab, identity: {identity},
            partition: gpu, account: lab, qos: normal, time: "12:00:00"}}
""",
    )
    entry = load_backends(config).entries["cluster"]
    assert entry.error is None and isinstance(entry.backend, SlurmBackend)
    backend = entry.backend
    assert backend.url == "ssh://alice@login:2222" and backend.config.partition == "gpu"
    assert backend.config.images == "/shared/lab/images" and backend.config.time == "12:00:00"
    assert backend.builder.name == "cluster-builder"  # images are built beside the daemon, then shipped


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("{type: slurm, login: 'ssh://alice@login', shared: /s, partitions: gpu}", "partitions"),
        ("{type: slurm, login: 'ssh://alice@login', shared: /s, time: soon}", "time 'soon'"),
        ("{type: slurm, login: 'alice@login', shared: /s}", "ssh://"),
        ("{type: slurm, shared: /s}", "login"),
    ],
)
def test_a_wrong_slurm_entry_is_listed_with_what_is_wrong(tmp_path: Path, identity: Path, body: str, said: str) -> None:
    config = write_config(tmp_path, f"backends:\n  cluster: {body[:-1]}, identity: {identity}}}\n")
    entry = load_backends(config).entries["cluster"]
    assert entry.backend is None and entry.error is not None and said in entry.error
    assert load_backends(config).entries["local"].error is None  # the daemon still starts with the others


def test_resources_time_is_a_duration_and_a_wrong_one_names_the_field(tmp_path: Path) -> None:
    spec = load_spec_text("name: w\nrequirements: []\nresources: {time: 8h}\n", "devenv.yaml", tmp_path)
    assert spec.resources.time == 8 * 3600
    with pytest.raises(SpecInvalid) as raised:
        load_spec_text("name: w\nrequirements: []\nresources:\n  time: soon\n", "devenv.yaml", tmp_path)
    shown = raised.value.render()
    assert "devenv.yaml:4" in shown and "resources.time" in shown and "8h" in shown
