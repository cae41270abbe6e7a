"""daemon.yaml's backend entries are typed per backend type: a key the type does not take, or a value of the wrong
kind, is listed beside the backend's name with the file, the key and what the type takes; the daemon still
starts with the others."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from devenv.backends import backend_types
from devenv.backends.base import BackendFactory
from devenv.backends.docker import DockerBackend
from devenv.daemon.services.backends import _make, load_backends


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "home"))


def entries(tmp_path: Path, body: str) -> dict:
    config = tmp_path / "daemon.yaml"
    config.write_text(body)
    return load_backends(config).entries


@pytest.mark.parametrize("kind", ["docker", "aws", "slurm"])
def test_every_built_in_type_has_typed_options_that_refuse_unknown_keys(kind: str) -> None:
    factory = backend_types()[kind].factory
    assert isinstance(factory, BackendFactory) and issubclass(factory.config, BaseModel)
    assert factory.config.model_config.get("extra") == "forbid"


def test_a_docker_entry_is_a_docker_backend_with_its_options(tmp_path: Path) -> None:
    found = entries(tmp_path, "backends:\n  box: {type: docker, url: 'tcp://127.0.0.1:2375', timeout: 30}\n")
    backend = found["box"].backend
    assert found["box"].error is None and isinstance(backend, DockerBackend)
    assert backend.url == "tcp://127.0.0.1:2375" and backend.timeout == 30


def test_an_unknown_key_is_named_with_the_options_the_type_takes(tmp_path: Path) -> None:
    found = entries(tmp_path, "backends:\n  box: {type: docker, urll: 'tcp://127.0.0.1:2375'}\n")
    assert found["box"].backend is None and found["box"].error is not None
    assert (
        "daemon.yaml: backends.box.urll: not an option of a docker backend (its options: url, identity, "
        "timeout)" in found["box"].error
    )
    assert found["local"].error is None  # the daemon starts with the others


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("{type: docker, timeout: -5}", "backends.box.timeout: Input should be greater than 0"),
        ("{type: aws, on_stop: delete}", "backends.box.on_stop: Input should be 'stop' or 'terminate'"),
        ("{type: aws, root_gib: 2}", "backends.box.root_gib: Input should be greater than or equal to 8"),
        ("{type: aws, regions: us-east-1}", "backends.box.regions: Input should be a valid list"),
        ("{type: slurm, shared: /s}", "backends.box.login: required by a slurm backend"),
    ],
)
def test_a_wrong_value_is_named_with_its_key(tmp_path: Path, body: str, said: str) -> None:
    found = entries(tmp_path, f"backends:\n  box: {body}\n")
    assert found["box"].backend is None and said in (found["box"].error or "")


def test_an_older_plugin_taking_keyword_options_still_loads() -> None:
    made: dict[str, object] = {}

    def legacy(name: str, **options: object) -> DockerBackend:
        made.update(options, name=name)
        return DockerBackend(name, "tcp://127.0.0.1:2375")

    backend = _make(legacy, "old", {"url": "tcp://127.0.0.1:2375", "colour": "blue"})
    assert isinstance(backend, DockerBackend) and made == {
        "name": "old",
        "url": "tcp://127.0.0.1:2375",
        "colour": "blue",
    }
