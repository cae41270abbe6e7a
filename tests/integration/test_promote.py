"""`devenv promote` on the real engine: the production image from the dev image's layers, without
the dev tooling, with the code of one commit, gated by the spec's tests, labelled, with its SBOM,
and the same image id when the same commit is promoted again. The library tests run here what the
daemon runs; the CLI tests go through a real devenvd, with the person's registry login."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import docker
import docker.errors
import pytest

from devenv.errors import UsageError
from devenv.promote.image import rfc3339
from devenv.promote.package import GateFailed
from devenv.promote.push import PushFailed
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.devenvd import Devenvd
from harness.git_server import git
from harness.promotion import promote_here
from harness.registry import Registry, registry_unreachable_host

APP = b"def answer():\n    return 42\n\n\nif __name__ == '__main__':\n    print('prod says', answer())\n"
PROMOTE = """promote:
  entrypoint: python app.py
ci:
  test: python -c 'import app; assert app.answer() == 42, app.answer()'
"""


def run(client: docker.DockerClient, image: str, *command: str, entrypoint: list[str] | None = None) -> str:
    output = client.containers.run(image, list(command) or None, entrypoint=entrypoint, remove=True)
    return output.decode().strip()


@pytest.fixture
def project(light_image: WorkspaceImage, tmp_path: Path, client: docker.DockerClient) -> Path:
    folder = copy_project(light_image, tmp_path / "app", "it-promote", extra=PROMOTE)
    (folder / "app.py").write_bytes(APP)
    git(folder, "init", "--quiet", "--initial-branch=main")
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "-m", "first")
    yield folder
    for image in client.images.list(name="devenv/it-promote-prod"):
        client.images.remove(image.id, force=True)


def test_promote_packages_the_commit_without_dev_tooling_and_reproducibly(
    project: Path, client: docker.DockerClient
) -> None:
    (project / "app.py").write_bytes(APP.replace(b"42", b"41"))  # uncommitted: must not be packaged
    made = promote_here(client, project)
    commit = git(project, "rev-parse", "HEAD")
    assert made.commit == commit and made.gate == "passed" and made.dirty
    assert any("uncommitted" in note for note in made.notes)
    image = client.images.get(made.tag)
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == commit
    when = int(git(project, "show", "-s", "--format=%ct", commit))
    assert labels["org.opencontainers.image.created"] == made.created == rfc3339(when)
    assert labels["devenv.lock-hash"] and labels["devenv.base-digest"].startswith("sha256:")
    assert image.attrs["Created"].startswith(made.created.rstrip("Z"))  # the commit's time, not the build's

    assert run(client, made.tag) == "prod says 42"  # the entrypoint, and the commit's code, not the edit
    listing = run(
        client,
        made.tag,
        "-c",
        "ls /app; ls /opt/devenv /usr/sbin/sshd /etc/ssh 2>&1 | wc -l; id -un",
        entrypoint=["bash"],
    )
    lines = listing.splitlines()
    assert "app.py" in lines and "devenv.yaml" in lines and lines[-1] == "dev"
    absent = run(
        client,
        made.tag,
        "-c",
        "test ! -e /opt/devenv && test ! -e /usr/sbin/sshd && test ! -e /etc/ssh && echo gone",
        entrypoint=["bash"],
    )
    assert absent == "gone"  # no JupyterLab, idle probe, sshd or its config
    sbom = json.loads(run(client, made.tag, "/usr/share/devenv/sbom.cdx.json", entrypoint=["cat"]))
    assert sbom["bomFormat"] == "CycloneDX" and sbom["metadata"]["component"]["version"] == commit
    assert json.loads(made.sbom) == sbom

    dev = client.images.get(f"devenv/it-promote:{labels['devenv.dev-image-hash']}")
    dev_layers, prod_layers = dev.attrs["RootFS"]["Layers"], image.attrs["RootFS"]["Layers"]
    assert prod_layers[:-2] == dev_layers[: len(prod_layers) - 2]  # the dependency layers are the dev image's own
    assert len(prod_layers) - 2 < len(dev_layers) and image.attrs["Size"] < dev.attrs["Size"]

    first_id = made.image_id
    client.images.remove(made.tag, force=True)
    again = promote_here(client, project)
    assert again.image_id == first_id  # the same commit, promoted again: the same image


def test_a_failing_gate_stops_the_promotion_with_the_output(project: Path, client: docker.DockerClient) -> None:
    (project / "app.py").write_bytes(APP.replace(b"return 42", b"return 7"))
    git(project, "commit", "--quiet", "-am", "break it")
    with pytest.raises(GateFailed) as failed:
        promote_here(client, project)
    assert "exit 1" in failed.value.message and "AssertionError: 7" in failed.value.message
    assert "nothing was pushed" in failed.value.message


def test_the_cli_promotes_through_the_daemon_writes_the_sbom_and_refuses_without_a_promote_section(
    project: Path, tmp_path: Path, devenvd: Devenvd
) -> None:
    done = devenvd.cli("promote", "--sbom", str(tmp_path / "sbom.json"), cwd=project, timeout=900)
    assert done.returncode == 0, done.stderr
    tag, image_id = done.stdout.split()
    assert tag.startswith("devenv/it-promote-prod:") and image_id.startswith("sha256:")
    assert json.loads((tmp_path / "sbom.json").read_text())["bomFormat"] == "CycloneDX"
    assert "gate: passed" in done.stderr

    spec = project / "devenv.yaml"
    spec.write_text(spec.read_text().replace("promote:\n  entrypoint: python app.py\n", ""))
    refused = devenvd.cli("promote", cwd=project, timeout=300)
    assert refused.returncode == 2 and "promote:" in refused.stderr and "Traceback" not in refused.stderr
    with pytest.raises(UsageError):
        promote_here(docker.from_env(), project)


def test_the_cli_pushes_with_the_persons_login_and_never_the_daemons(
    project: Path, client: docker.DockerClient, tmp_path: Path, devenvd: Devenvd
) -> None:
    with Registry(tmp_path / "registry", username="ci", password="s3cret-pw") as registry:
        target = f"{registry.host}/team/it-promote:cli"
        nobody = tmp_path / "nobody"  # a docker config with no login: the push is refused, naming `docker login`
        nobody.mkdir()
        try:
            refused = devenvd.cli("promote", "--to", target, cwd=project, env={"DOCKER_CONFIG": str(nobody)})
            assert refused.returncode != 0 and "docker login" in refused.stderr, refused.stderr
            assert registry.tags("team/it-promote") == []

            person = tmp_path / "person"
            person.mkdir()
            login = base64.b64encode(b"ci:s3cret-pw").decode()
            (person / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": login}}}))
            pushed = devenvd.cli("promote", "--to", target, cwd=project, env={"DOCKER_CONFIG": str(person)})
            assert pushed.returncode == 0, pushed.stderr
            reference = pushed.stdout.strip()
            assert reference == f"{registry.host}/team/it-promote@{registry.manifest_digest('team/it-promote', 'cli')}"
            for kept in devenvd.home.rglob("*"):  # its log, its store, its code uploads: the login is in none
                if kept.is_file():
                    data = kept.read_bytes()
                    assert b"s3cret-pw" not in data and login.encode() not in data, kept
        finally:
            for image in client.images.list(name=f"{registry.host}/team/it-promote"):
                client.images.remove(image.id, force=True)


def test_push_to_a_registry_sends_only_the_code_layer_after_a_code_change(
    project: Path, client: docker.DockerClient, tmp_path: Path
) -> None:
    with Registry(tmp_path / "registry", username="ci", password="s3cret-pw") as registry:
        target = f"{registry.host}/team/it-promote:1"
        try:
            with pytest.raises(PushFailed) as refused:  # no credentials: a clear error, the local image intact
                promote_here(client, project, tag=target, push_to_registry=True)
            assert "log in" in (refused.value.hint or "") and client.images.get(target)
            assert registry.tags("team/it-promote") == []

            first = promote_here(
                client,
                project,
                tag=target,
                push_to_registry=True,
                auth_config=registry.auth_config,
            )
            assert first.pushed is not None and first.pushed.layers_present == 0
            assert first.pushed.digest == registry.manifest_digest("team/it-promote", "1")
            full = sum(registry.blob_sizes("team/it-promote", "1").values())

            (project / "app.py").write_bytes(APP + b"# a comment\n")
            git(project, "commit", "--quiet", "-am", "code only")
            second_tag = f"{registry.host}/team/it-promote:2"
            second = promote_here(
                client,
                project,
                tag=second_tag,
                push_to_registry=True,
                auth_config=registry.auth_config,
            )
            assert second.pushed is not None and second.pushed.layers_sent == 1  # the code layer, nothing else
            assert second.pushed.bytes_sent < full / 20
            print(
                f"\nfull image {full / 1e6:.1f} MB compressed; after a code-only change "
                f"{second.pushed.bytes_sent / 1e3:.1f} kB ({second.pushed.bytes_sent / full:.4f})"
            )

            with pytest.raises(PushFailed) as unreachable:
                promote_here(
                    client,
                    project,
                    tag=f"{registry_unreachable_host()}/team/it-promote:3",
                    push_to_registry=True,
                )
            assert "connection refused" in unreachable.value.message
        finally:
            for image in client.images.list(name=f"{registry.host}/team/it-promote"):
                client.images.remove(image.id, force=True)
