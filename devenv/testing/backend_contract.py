"""The one contract every Backend keeps, run against the fake and the real engines alike.

Subclass it in a test module (`class TestMyBackend(BackendContract)`) that provides four fixtures:
`backend` (the Backend under test), `launch` (a factory `launch(workspace, **overrides) -> LaunchRequest`
whose image works on that backend), `unreachable_backend` (one whose engine does not answer) and
`gpus_asked` (`gpus_asked(handle) -> (count, device ids)`: what the engine itself was asked for, read back
from the engine, never from the request; (None, ()) for no GPU).
Every test makes uniquely named workspaces and removes them, volumes included, when it ends.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devenv.backends.base import (
    HOME_MOUNT,
    SECRETS_DIR,
    SSH_PORT,
    Backend,
    Handle,
    LaunchRequest,
    Observed,
    volume_name,
)
from devenv.errors import BackendError, EngineUnreachable, PortInUse
from devenv.testing.network import free_port

Launch = Callable[..., LaunchRequest]
GpusAsked = Callable[[Handle], tuple[int | None, tuple[str, ...]]]


def run(backend: Backend, handle: Handle, argv: list[str], **how: Any) -> tuple[bytes, bytes, int | None]:
    """(stdout, stderr, exit code) of a command run in the workspace (`how`: exec's user, env, workdir)."""
    stream = backend.exec(handle, argv, **how)
    out, err = bytearray(), bytearray()
    for name, data in stream:
        (out if name == "stdout" else err).extend(data)
    return bytes(out), bytes(err), stream.exit_code


def engine_gpus_asked(client: Any) -> GpusAsked:
    """`gpus_asked` for a Docker engine (a DockerClient): the container's device requests as the engine
    recorded them."""

    def asked(handle: Handle) -> tuple[int | None, tuple[str, ...]]:
        requests = client.api.inspect_container(handle.container)["HostConfig"].get("DeviceRequests") or []
        if not requests:
            return None, ()
        [request] = requests
        assert request["Capabilities"] == [["gpu"]], request
        ids = tuple(request.get("DeviceIDs") or ())
        return (None, ids) if ids else (request["Count"], ())

    return asked


def observed(backend: Backend, workspace: str) -> list[Observed]:
    return [o for o in backend.list_workspaces() if o.workspace == workspace]


class BackendContract:
    """The rules of `devenv.backends.base`, as tests. Collected by pytest only when subclassed."""

    @pytest.fixture
    def workspaces(self, backend: Backend) -> Iterator[Callable[[], str]]:
        """A maker of unique workspace names; whatever they name is removed at the end."""
        made: list[str] = []

        def make() -> str:
            made.append(f"ct-{uuid.uuid4().hex[:10]}")
            return made[-1]

        yield make
        for workspace in made:
            backend.remove(Handle.for_workspace(workspace), keep_volume=False)

    @pytest.fixture
    def workspace(self, workspaces: Callable[[], str]) -> str:
        return workspaces()

    def test_create_is_idempotent(self, backend: Backend, launch: Launch, workspace: str) -> None:
        first = backend.create(launch(workspace))
        second = backend.create(launch(workspace))
        assert first == second == Handle.for_workspace(workspace)
        assert Handle.from_json(first.to_json()) == first
        assert len(observed(backend, workspace)) == 1

    def test_labels_are_visible_in_one_list(self, backend: Backend, launch: Launch, workspace: str) -> None:
        request = launch(workspace)
        handle = backend.create(request)
        [found] = observed(backend, workspace)
        assert found.container_name == handle.container
        assert found.owner == request.owner
        assert found.image_hash == request.image_hash
        assert found.status == "created" and not found.running
        assert found.container_id
        assert found.daemon is None  # a request without a daemon id makes no label

    def test_the_daemon_id_is_a_label_seen_in_the_list(self, backend: Backend, launch: Launch, workspace: str) -> None:
        request = LaunchRequest(**{**launch(workspace).__dict__, "daemon": "0123456789abcdef"})
        backend.create(request)
        [found] = observed(backend, workspace)
        assert found.daemon == "0123456789abcdef"
        assert backend.start(Handle.for_workspace(workspace)).daemon == "0123456789abcdef"

    def test_home_volume_is_listed_with_its_workspace(self, backend: Backend, launch: Launch, workspace: str) -> None:
        request = launch(workspace)
        handle = backend.create(request)
        volumes = {v.name: v for v in backend.list_volumes()}
        assert handle.volume == volume_name(workspace)
        assert volumes[handle.volume].workspace == workspace
        assert volumes[handle.volume].owner == request.owner
        assert volumes[handle.volume].image_hash == request.image_hash
        assert backend.ensure_volume(workspace, request.owner) == handle.volume
        assert sum(v.name == handle.volume for v in backend.list_volumes()) == 1

    def test_start_runs_with_the_ssh_port_published(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        started = backend.start(handle)
        assert started.running and started.workspace == workspace
        assert started.ports[SSH_PORT] > 0
        again = backend.start(handle)  # no-op when running
        assert again.running and again.ports == started.ports
        [listed] = observed(backend, workspace)
        assert listed.running and listed.ports.get(SSH_PORT) == started.ports[SSH_PORT]

    def test_stop_is_idempotent(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        backend.stop(handle, timeout=2)
        [listed] = observed(backend, workspace)
        assert not listed.running
        backend.stop(handle, timeout=2)
        backend.remove_container(handle)
        backend.stop(handle, timeout=2)  # gone: still no error

    def test_home_survives_a_new_container(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        assert run(backend, handle, ["sh", "-c", "echo data > /home/dev/f"])[2] == 0
        backend.remove_container(handle)
        backend.remove_container(handle)  # idempotent
        assert observed(backend, workspace) == []
        assert volume_name(workspace) in {v.name for v in backend.list_volumes()}
        backend.create(launch(workspace))
        backend.start(handle)
        assert run(backend, handle, ["sh", "-c", "cat /home/dev/f"]) == (b"data\n", b"", 0)

    def test_remove_keeping_the_volume(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        backend.remove(handle, keep_volume=True)
        assert observed(backend, workspace) == []
        assert handle.volume in {v.name for v in backend.list_volumes()}
        backend.remove(handle, keep_volume=True)

    def test_remove_everything_twice(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        backend.remove(handle, keep_volume=False)
        assert observed(backend, workspace) == []
        assert handle.volume not in {v.name for v in backend.list_volumes()}
        backend.remove(handle, keep_volume=False)
        backend.remove_container(handle)

    def test_exec_splits_streams_and_reports_exit_codes(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        assert run(backend, handle, ["sh", "-c", "echo out; echo err >&2; exit 3"]) == (b"out\n", b"err\n", 3)
        assert run(backend, handle, ["true"]) == (b"", b"", 0)
        assert run(backend, handle, ["false"]) == (b"", b"", 1)
        assert run(backend, handle, ["echo", "a", "b"]) == (b"a b\n", b"", 0)

    def test_exec_in_a_stopped_workspace_is_an_error(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        with pytest.raises(BackendError):
            run(backend, handle, ["true"])

    def test_a_taken_port_is_port_in_use(self, backend: Backend, launch: Launch, workspaces: Callable[[], str]) -> None:
        port = free_port()
        holder = backend.create(launch(workspaces(), ports=(port,)))
        assert backend.start(holder).ports[port] == port
        late_workspace = workspaces()
        late = backend.create(launch(late_workspace, ports=(port,)))
        with pytest.raises(PortInUse) as caught:
            backend.start(late)
        assert str(port) in caught.value.message
        [listed] = observed(backend, late_workspace)
        assert not listed.running

    def test_unreachable_engine_names_its_url(self, unreachable_backend: Backend, launch: Launch) -> None:
        calls: list[Callable[[], Any]] = [
            unreachable_backend.ping,
            unreachable_backend.list_workspaces,
            unreachable_backend.list_volumes,
            lambda: unreachable_backend.create(launch("ct-never")),
        ]
        for call in calls:
            with pytest.raises(EngineUnreachable) as caught:
                call()
            assert unreachable_backend.url in caught.value.message

    def test_files_are_placed_before_start_and_replaced_while_running(
        self, backend: Backend, launch: Launch, workspace: str
    ) -> None:
        request = launch(workspace)
        request = LaunchRequest(**{**request.__dict__, "files": {"/etc/devenv/test/a": b"first\n"}})
        handle = backend.create(request)
        backend.start(handle)
        assert run(backend, handle, ["cat", "/etc/devenv/test/a"])[0] == b"first\n"
        backend.put_files(handle, {"/etc/devenv/test/a": b"second\n", "/etc/devenv/test/b": b"new\n"})
        assert run(backend, handle, ["cat", "/etc/devenv/test/a"])[0] == b"second\n"
        assert run(backend, handle, ["cat", "/etc/devenv/test/b"])[0] == b"new\n"

    def test_shm_and_ulimits_are_what_was_asked(self, backend: Backend, launch: Launch, workspace: str) -> None:
        """/dev/shm's size and the process limits inside are the request's (limits below any engine's own hard
        limit: an engine without CAP_SYS_RESOURCE may only lower memlock)."""
        limits = {"memlock": 4 * 1024**2, "stack": 64 * 1024**2, "nofile": 4096}
        request = LaunchRequest(**{**launch(workspace).__dict__, "shm": 256 * 1024**2, "ulimits": limits})
        handle = backend.create(request)
        backend.start(handle)
        assert run(backend, handle, ["df", "-B1", "--output=size", "/dev/shm"])[0].split()[-1] == b"268435456"
        out, _err, code = run(backend, handle, ["bash", "-c", "ulimit -l; ulimit -s; ulimit -n"])
        assert (out.split(), code) == ([b"4096", b"65536", b"4096"], 0)

    def test_exec_runs_as_the_user_with_the_environment_in_the_folder_asked(
        self, backend: Backend, launch: Launch, workspace: str
    ) -> None:
        handle = backend.create(launch(workspace, env={"FROM_SPEC": "spec"}))
        backend.start(handle)
        assert run(backend, handle, ["id", "-un"]) == (b"dev\n", b"", 0)
        assert run(backend, handle, ["id", "-un"], user="root") == (b"root\n", b"", 0)
        assert run(backend, handle, ["pwd"]) == (f"{HOME_MOUNT}\n".encode(), b"", 0)
        assert run(backend, handle, ["pwd"], workdir="/tmp") == (b"/tmp\n", b"", 0)
        assert run(backend, handle, ["printenv", "ASKED"], env={"ASKED": "a b"}) == (b"a b\n", b"", 0)
        assert run(backend, handle, ["printenv", "ASKED"])[2] == 1  # one exec's environment is not the next's
        assert run(backend, handle, ["printenv", "FROM_SPEC"]) == (b"spec\n", b"", 0)

    def test_secrets_are_exactly_what_was_put_readable_by_dev_alone(
        self, backend: Backend, launch: Launch, workspace: str
    ) -> None:
        handle = backend.create(launch(workspace))
        with pytest.raises(BackendError):  # a stopped workspace has no tmpfs to hold them
            backend.put_secrets(handle, {"TOKEN": b"t"})
        backend.start(handle)
        backend.put_secrets(handle, {"TOKEN": b"first", "OTHER": b"o"})
        assert run(backend, handle, ["cat", f"{SECRETS_DIR}/TOKEN"]) == (b"first", b"", 0)
        assert run(backend, handle, ["stat", "-c", "%a %U", f"{SECRETS_DIR}/TOKEN"]) == (b"400 dev\n", b"", 0)
        backend.put_secrets(handle, {"TOKEN": b"second"})  # exactly these: OTHER is gone
        assert run(backend, handle, ["cat", f"{SECRETS_DIR}/TOKEN"]) == (b"second", b"", 0)
        assert run(backend, handle, ["cat", f"{SECRETS_DIR}/OTHER"])[2] == 1
        backend.stop(handle)
        backend.start(handle)  # a tmpfs: nothing outlives the run
        assert run(backend, handle, ["cat", f"{SECRETS_DIR}/TOKEN"])[2] == 1

    def test_logs_hold_what_the_workspace_printed(self, backend: Backend, launch: Launch, workspace: str) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        deadline = time.monotonic() + 30  # sshd says it listens a moment after start
        while b"Server listening" not in (text := b"".join(backend.logs(handle))):
            assert time.monotonic() < deadline, f"sshd's line not in the logs within 30 s: {text[-500:]!r}"
            time.sleep(0.2)
        assert b"".join(backend.logs(handle, tail=0)) == b""

    def test_the_internal_address_reaches_a_port_that_is_not_published(
        self, backend: Backend, launch: Launch, workspace: str
    ) -> None:
        handle = backend.create(launch(workspace))
        backend.start(handle)
        host, port = backend.internal_address(handle, SSH_PORT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((host, port), timeout=5) as conn:
                    greeting = conn.recv(64)
                if greeting:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"nothing answered on {host}:{port} within 30 s"
            time.sleep(0.2)
        assert greeting.startswith(b"SSH-2.0-")

    def test_gpus_are_asked_of_the_engine_as_requested(
        self, backend: Backend, launch: Launch, workspaces: Callable[[], str], gpus_asked: GpusAsked
    ) -> None:
        """Never started: there is no GPU here; what the engine was asked for is what a GPU machine gets."""
        cases: list[tuple[dict[str, Any], tuple[int | None, tuple[str, ...]]]] = [
            ({}, (None, ())),
            ({"gpu_count": 2, "gpu_kind": "A100"}, (2, ())),
            ({"gpu_count": -1}, (-1, ())),
            ({"gpu_count": 2, "gpu_ids": ("1", "3")}, (None, ("1", "3"))),
        ]
        for overrides, asked in cases:
            workspace = workspaces()
            handle = backend.create(launch(workspace, **overrides))
            assert gpus_asked(handle) == asked, overrides
            [listed] = observed(backend, workspace)
            assert listed.gpu_ids == tuple(overrides.get("gpu_ids", ()))
