"""The FakeBackend keeps the Backend contract, and its steering (calls, vanish, fail_next) works."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv.backends.base import Backend, GpuCapable, Handle, ImageBuilder, LaunchRequest
from devenv.build.project import checked_lock, open_project, project_plan
from devenv.errors import BackendError, EngineUnreachable, LockMismatch, PortInUse
from devenv.testing.backend_contract import BackendContract, run
from devenv.testing.fake_backend import FakeBackend
from devenv.testing.projects import copy_template

IMAGE = "devenv/fake:0123456789abcdef"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(images=[IMAGE])


@pytest.fixture
def launch() -> Callable[..., LaunchRequest]:
    def make(workspace: str, **overrides: Any) -> LaunchRequest:
        fields: dict[str, Any] = {
            "workspace": workspace,
            "owner": "alice",
            "image": IMAGE,
            "image_hash": "0123456789abcdef" * 4,
            **overrides,
        }
        return LaunchRequest(**fields)

    return make


@pytest.fixture
def unreachable_backend() -> FakeBackend:
    fake = FakeBackend(url="tcp://fake-host:2375")
    fake.reachable = False
    return fake


@pytest.fixture
def gpus_asked(backend: FakeBackend) -> Callable[[Handle], tuple[int | None, tuple[str, ...]]]:
    """As the docker backend asks its engine: the ids placement chose, else a count."""

    def asked(handle: Handle) -> tuple[int | None, tuple[str, ...]]:
        request = backend.launched(handle.workspace)
        return (None, request.gpu_ids) if request.gpu_ids else (request.gpu_count, ())

    return asked


class TestFakeBackendContract(BackendContract):
    pass


def test_it_has_the_capabilities(backend: FakeBackend) -> None:
    assert isinstance(backend, Backend) and isinstance(backend, ImageBuilder) and isinstance(backend, GpuCapable)


def test_calls_are_counted_one_list_per_call(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    for name in ("a", "b", "c"):
        backend.create(launch(name))
    backend.calls.clear()
    assert len(backend.list_workspaces()) == 3
    assert backend.calls == {"list_workspaces": 1}


def test_vanish_removes_the_container_but_not_the_home(
    backend: FakeBackend, launch: Callable[..., LaunchRequest]
) -> None:
    handle = backend.create(launch("gone"))
    backend.start(handle)
    backend.vanish("gone")
    assert backend.list_workspaces() == []
    assert [v.workspace for v in backend.list_volumes()] == ["gone"]
    backend.stop(handle)
    backend.remove(handle, keep_volume=False)
    with pytest.raises(BackendError):
        backend.start(handle)


def test_fail_next_raises_once(backend: FakeBackend) -> None:
    backend.fail_next("list_workspaces", BackendError("boom"))
    with pytest.raises(BackendError, match="boom"):
        backend.list_workspaces()
    assert backend.list_workspaces() == []
    assert backend.calls["list_workspaces"] == 2


def test_unreachable_refuses_every_call(launch: Callable[..., LaunchRequest]) -> None:
    fake = FakeBackend(url="ssh://gpu-box")
    handle = fake.create(launch("w"))
    fake.reachable = False
    for call in (
        lambda: fake.start(handle),
        lambda: fake.stop(handle),
        lambda: fake.remove(handle, keep_volume=True),
        lambda: fake.exec(handle, ["true"]),
        lambda: fake.logs(handle),
        fake.ping,
    ):
        with pytest.raises(EngineUnreachable, match="ssh://gpu-box"):
            call()
    fake.reachable = True
    assert fake.list_workspaces()[0].status == "created"


def test_exit_makes_the_container_exit(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    handle = backend.create(launch("w", ports=(8000,)))
    backend.start(handle)
    backend.exit("w", 137)
    [found] = backend.list_workspaces()
    assert found.status == "exited" and found.detail == "Exited (137)" and found.ports == {}
    assert backend.start(handle).running


def test_a_port_is_free_again_once_its_holder_stops(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    first = backend.create(launch("one", ports=(8000,)))
    second = backend.create(launch("two", ports=(8000,)))
    backend.start(first)
    with pytest.raises(PortInUse, match="8000"):
        backend.start(second)
    backend.stop(first)
    assert backend.start(second).ports[8000] == 8000


def test_an_unknown_image_is_a_backend_error(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    with pytest.raises(BackendError, match="devenv/other:1") as caught:
        backend.create(launch("w", image="devenv/other:1"))
    assert caught.value.hint and "build" in caught.value.hint
    assert FakeBackend().create(launch("w", image="anything")) == Handle.for_workspace("w")


def test_exec_handler_answers_first(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    seen: list[tuple[str, list[str]]] = []

    def handler(workspace: str, argv: list[str]) -> tuple[int, bytes, bytes] | None:
        seen.append((workspace, argv))
        return (0, b"idle 42\n", b"") if argv[0] == "devenv-idle" else None

    backend.exec_handler = handler
    handle = backend.create(launch("w"))
    backend.start(handle)
    assert run(backend, handle, ["devenv-idle"]) == (b"idle 42\n", b"", 0)
    assert run(backend, handle, ["echo", "hi"]) == (b"hi\n", b"", 0)
    assert seen == [("w", ["devenv-idle"]), ("w", ["echo", "hi"])]


def test_the_shell_language(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    handle = backend.create(launch("w"))
    backend.start(handle)
    assert run(backend, handle, ["sh", "-c", "echo a > f; echo b >> f; cat f"]) == (b"a\nb\n", b"", 0)
    assert run(backend, handle, ["sh", "-c", "cat /nope"]) == (b"", b"cat: /nope: No such file or directory\n", 1)
    assert run(backend, handle, ["sh", "-c", "false; true"])[2] == 0
    assert run(backend, handle, ["echo", "a;", ">&2"]) == (b"a; >&2\n", b"", 0)  # no shell, no syntax
    assert run(backend, handle, ["uname"])[2] == 127


def test_logs_tail(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    handle = backend.create(launch("w"))
    assert list(backend.logs(handle)) == []
    backend.start(handle)
    backend.stop(handle)
    backend.start(handle)
    assert len(list(backend.logs(handle))) == 2
    assert len(list(backend.logs(handle, tail=1))) == 1
    assert list(backend.logs(handle, tail=0)) == []


def test_concurrent_creates_make_one_container_each(backend: FakeBackend, launch: Callable[..., LaunchRequest]) -> None:
    threads = [threading.Thread(target=backend.create, args=(launch(f"w{i % 5}"),)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.workspace for o in backend.list_workspaces()) == [f"w{i}" for i in range(5)]
    assert len(backend.list_volumes()) == 5


def test_lock_then_build_gives_the_plan_tag(tmp_path: Path) -> None:
    project = open_project(copy_template("minimal", tmp_path / "p", project_name="fake-proj"))
    fake = FakeBackend()
    fake.lock(project)
    plan = project_plan(project, checked_lock(project), provenance=False)
    first = fake.build(project)
    assert first.tag == plan.tag and not first.cached
    assert fake.build(project).cached
    assert fake.images == {plan.tag}
    assert fake.locked == [project] and fake.calls["build"] == 2


def test_build_checks_the_lock(tmp_path: Path) -> None:
    spec = copy_template("minimal", tmp_path / "p", project_name="fake-proj")
    fake = FakeBackend()
    fake.lock(open_project(spec))
    spec.write_text(spec.read_text().replace("apt: []", "apt: [curl]"))
    with pytest.raises(LockMismatch):
        fake.build(open_project(spec))
