"""The test registry (harness.registry) round-trips the real base image through the real engine,
and its basic auth refuses what it should: the ground the push/pull tests of issue 8 stand on."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from devenv.lock.models import BaseImage
from harness.registry import Registry, push_errors, registry_unreachable_host


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as made:
        yield made


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry-auth"), username="dev", password="s3cret") as made:
        yield made


@pytest.fixture
def references(client: docker.DockerClient) -> Iterator[list[str]]:
    """Repositories whose local tags and digest references are dropped at the end (never the image itself)."""
    made: list[str] = []
    yield made
    for image in client.images.list():
        for reference in [*image.tags, *image.attrs.get("RepoDigests", [])]:
            if any(
                reference.startswith(f"{repository}:") or reference.startswith(f"{repository}@") for repository in made
            ):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(reference, noprune=True)


def _tagged(client: docker.DockerClient, base: BaseImage, repository: str, references: list[str]) -> None:
    references.append(repository)
    assert client.images.get(base.image).tag(repository, "1")


def _push(
    client: docker.DockerClient, repository: str, auth_config: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    return list(client.images.push(repository, tag="1", stream=True, decode=True, auth_config=auth_config))


def test_push_then_pull_by_digest_round_trips(
    client: docker.DockerClient, cpu_base: BaseImage, registry: Registry, references: list[str]
) -> None:
    repository = f"{registry.host}/devenv-test/base"
    _tagged(client, cpu_base, repository, references)
    before = registry.stored_blobs()
    events = _push(client, repository)
    assert push_errors(events) == []
    [aux] = [e["aux"] for e in events if "aux" in e]

    digest = registry.manifest_digest(repository, "1")
    assert aux["Digest"] == digest and aux["Tag"] == "1"
    assert registry.manifest_digest(repository, digest) == digest
    assert registry.tags(repository) == ["1"] and registry.tags("devenv-test/never") == []
    manifest = registry.manifest(repository, "1")
    assert manifest["config"]["digest"] == cpu_base.digest == client.images.get(cpu_base.image).id
    layers = registry.blob_sizes(repository, "1")
    assert len(layers) == len(client.images.get(cpu_base.image).attrs["RootFS"]["Layers"])
    added = {d: s for d, s in registry.stored_blobs().items() if d not in before}
    assert layers.items() <= added.items()  # every layer landed on disk, at the size the manifest says
    assert digest in added  # the manifest itself is a blob too
    assert sum(layers.values()) > 10_000_000  # a real root file system, compressed

    client.api.remove_image(f"{repository}:1", noprune=True)
    with contextlib.suppress(docker.errors.ImageNotFound):  # usually gone with the repository's last tag
        client.api.remove_image(f"{repository}@{digest}", noprune=True)
    assert not any(
        r.startswith(repository) for i in client.images.list() for r in [*i.tags, *i.attrs.get("RepoDigests", [])]
    )
    pulled = client.images.pull(f"{repository}@{digest}")
    assert pulled.id == cpu_base.digest
    assert f"{repository}@{digest}" in pulled.attrs["RepoDigests"]


def test_basic_auth_refuses_no_or_wrong_credentials(
    client: docker.DockerClient, cpu_base: BaseImage, secured: Registry, references: list[str]
) -> None:
    repository = f"{secured.host}/devenv-test/base"
    _tagged(client, cpu_base, repository, references)
    assert secured.auth_config == {"username": "dev", "password": "s3cret"}

    anonymous = push_errors(_push(client, repository))
    assert anonymous and any(
        word in anonymous[0].lower() for word in ("no basic auth credentials", "unauthorized", "authentication")
    )
    wrong = push_errors(_push(client, repository, {"username": "dev", "password": "wrong"}))
    assert wrong and any(word in wrong[0].lower() for word in ("unauthorized", "authentication"))
    assert secured.tags(repository) == []

    assert push_errors(_push(client, repository, secured.auth_config)) == []
    assert secured.tags(repository) == ["1"]
    assert secured.manifest(repository, "1")["config"]["digest"] == cpu_base.digest
    with pytest.raises(docker.errors.APIError):  # pull raises (unlike push) without credentials
        client.images.pull(f"{repository}@{secured.manifest_digest(repository, '1')}")


def test_an_unreachable_registry_is_a_push_error(
    client: docker.DockerClient, cpu_base: BaseImage, references: list[str], tmp_path: Path
) -> None:
    repository = f"{registry_unreachable_host()}/devenv-test/{uuid.uuid4().hex[:8]}"
    _tagged(client, cpu_base, repository, references)
    errors = push_errors(_push(client, repository))
    assert errors and "connection refused" in errors[0].lower()
    with pytest.raises(ValueError):
        Registry(tmp_path, username="dev")
