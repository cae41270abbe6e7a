"""DockerBackend against the real engine: the Backend contract, then what only Docker can show."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from devenv.backends.base import SSH_PORT, Backend, GpuCapable, Handle, ImageBuilder, LaunchRequest
from devenv.backends.containers import LABEL_GPU
from devenv.backends.docker import DockerBackend
from devenv.backends.isolation import CAPABILITIES, PIDS_LIMIT, SUBNET_PREFIX, SUBNETS, network_name
from devenv.errors import BackendError, EngineUnreachable, PortInUse
from devenv.testing.backend_contract import BackendContract, GpusAsked, engine_gpus_asked, free_port, run

Launch = Callable[..., LaunchRequest]


def ssh_banner(port: int, *, within: float = 30.0) -> bytes:
    """sshd's greeting on `port`, polled: start returns before sshd listens (the proxy accepts, then closes)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                greeting = conn.recv(64)
            if greeting:
                return greeting
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing greets on 127.0.0.1:{port}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def backend() -> Iterator[DockerBackend]:
    docker_backend = DockerBackend()
    yield docker_backend
    docker_backend.close()


@pytest.fixture
def launch(light_image: Any) -> Launch:  # conftest.WorkspaceImage
    def make(workspace: str, **overrides: Any) -> LaunchRequest:
        fields: dict[str, Any] = {
            "workspace": workspace,
            "owner": "alice",
            "image": light_image.tag,
            "image_hash": light_image.image_hash,
            "jupyter": False,
            **overrides,
        }
        return LaunchRequest(**fields)

    return make


@pytest.fixture
def unreachable_backend() -> DockerBackend:
    return DockerBackend("x", "tcp://127.0.0.1:1", timeout=5)


@pytest.fixture
def workspace(backend: DockerBackend) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:10]}"
    yield name
    backend.remove(Handle.for_workspace(name), keep_volume=False)


@pytest.fixture
def gpus_asked(client: docker.DockerClient) -> GpusAsked:
    return engine_gpus_asked(client)


class TestDockerBackendContract(BackendContract):
    pass


def test_it_has_the_capabilities(backend: DockerBackend) -> None:
    assert isinstance(backend, Backend) and isinstance(backend, ImageBuilder) and isinstance(backend, GpuCapable)
    assert backend.supports_gpu


def test_cpu_memory_and_the_container_settings(
    backend: DockerBackend, launch: Launch, workspace: str, client: docker.DockerClient
) -> None:
    handle = backend.create(launch(workspace, cpu=1.5, memory=512 * 1024**2, env={"FOO": "bar"}, jupyter=False))
    info = client.api.inspect_container(handle.container)
    host = info["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000 and host["Memory"] == 512 * 1024**2
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert not host.get("Binds")
    [mount] = info["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"]) == ("volume", handle.volume, "/home/dev")
    assert info["Config"]["Hostname"] == workspace
    env = set(info["Config"]["Env"])
    assert {"FOO=bar", f"DEVENV_WORKSPACE={workspace}", "DEVENV_SSH=1", "DEVENV_JUPYTER=0"} <= env
    assert info["Config"]["Labels"]["devenv.role"] == "workspace"
    assert client.api.inspect_volume(handle.volume)["Labels"]["devenv.role"] == "home"


def test_gpu_request_is_a_device_request_and_a_label(
    backend: DockerBackend, launch: Launch, workspace: str, client: docker.DockerClient
) -> None:
    handle = backend.create(launch(workspace, gpu_count=2, gpu_kind="A100"))  # no GPU here: never started
    info = client.api.inspect_container(handle.container)
    [request] = info["HostConfig"]["DeviceRequests"]
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]
    assert info["Config"]["Labels"][LABEL_GPU] == "A100:2"


def test_spec_ports_are_published_on_loopback(
    backend: DockerBackend, launch: Launch, workspace: str, client: docker.DockerClient
) -> None:
    port = free_port()
    started = backend.start(backend.create(launch(workspace, ports=(port,))))
    assert started.ports[port] == port
    bound = client.api.inspect_container(started.container_id)["NetworkSettings"]["Ports"]
    assert {b["HostIp"] for b in bound[f"{port}/tcp"]} == {"127.0.0.1"}
    assert {b["HostIp"] for b in bound[f"{SSH_PORT}/tcp"]} == {"127.0.0.1"}
    assert ssh_banner(started.ports[SSH_PORT]).startswith(b"SSH-2.0-")  # sshd answers on the published port


def test_a_port_held_by_a_process_is_port_in_use(backend: DockerBackend, launch: Launch, workspace: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        handle = backend.create(launch(workspace, ports=(port,)))
        with pytest.raises(PortInUse) as caught:
            backend.start(handle)
    assert str(port) in caught.value.message and backend.url in caught.value.message
    assert caught.value.hint and "ports:" in caught.value.hint
    [listed] = [o for o in backend.list_workspaces() if o.workspace == workspace]
    assert not listed.running


def test_list_workspaces_is_one_engine_call(
    backend: DockerBackend, launch: Launch, workspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for suffix in ("", "-b", "-c"):
        backend.create(launch(workspace + suffix))
    try:
        seen: list[dict[str, Any]] = []
        real = backend.client.api.containers

        def counting(**kwargs: Any) -> Any:
            seen.append(kwargs)
            return real(**kwargs)

        monkeypatch.setattr(backend.client.api, "containers", counting)
        mine = [o for o in backend.list_workspaces() if o.workspace.startswith(workspace)]
        assert len(mine) == 3 and len(seen) == 1
    finally:
        for suffix in ("-b", "-c"):
            backend.remove(Handle.for_workspace(workspace + suffix), keep_volume=False)


def test_a_missing_image_is_a_backend_error(backend: DockerBackend, launch: Launch, workspace: str) -> None:
    with pytest.raises(BackendError, match="devenv/missing:0") as caught:
        backend.create(launch(workspace, image="devenv/missing:0"))
    assert caught.value.hint and "build" in caught.value.hint


def test_logs_show_sshd(backend: DockerBackend, launch: Launch, workspace: str) -> None:
    handle = backend.create(launch(workspace))
    started = backend.start(handle)
    ssh_banner(started.ports[SSH_PORT])  # sshd is up once it greets
    assert b"Server listening" in b"".join(backend.logs(handle, tail=20))


def test_an_unreachable_engine_is_named_and_construction_is_quiet() -> None:
    unreachable = DockerBackend("x", "tcp://127.0.0.1:1")  # must not raise: the daemon starts without engines
    with pytest.raises(EngineUnreachable, match=re.escape("tcp://127.0.0.1:1")) as caught:
        unreachable.ping()
    assert "Connection refused" in caught.value.message
    assert isinstance(caught.value.__cause__, Exception)


def test_exec_runs_as_dev_in_the_home(backend: DockerBackend, launch: Launch, workspace: str) -> None:
    handle = backend.create(launch(workspace))
    backend.start(handle)
    assert run(backend, handle, ["sh", "-c", "id -un; pwd"]) == (b"dev\n/home/dev\n", b"", 0)
    stream = backend.exec(handle, ["sh", "-c", "echo $X"], env={"X": "42"}, workdir="/tmp", user="root")
    assert b"".join(data for _, data in stream) == b"42\n" and stream.exit_code == 0


def test_a_workspace_is_confined_to_its_own_network(
    backend: DockerBackend, launch: Launch, workspace: str, client: docker.DockerClient
) -> None:
    handle = backend.create(launch(workspace, daemon="0123456789abcdef"))
    info = client.api.inspect_container(handle.container)
    host = info["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["CapDrop"] == ["ALL"] and set(host["CapAdd"]) == set(CAPABILITIES)
    assert "NET_RAW" not in {cap.removeprefix("CAP_") for cap in host["CapAdd"]}
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["NetworkMode"] == network_name(workspace)
    assert set(info["NetworkSettings"]["Networks"]) == {network_name(workspace)}
    assert "host.docker.internal:host-gateway" in host["ExtraHosts"]

    network = client.api.inspect_network(network_name(workspace))
    assert network["Driver"] == "bridge" and not network["Internal"]
    assert network["Labels"] == {
        "devenv.workspace": workspace,
        "devenv.owner": "alice",
        "devenv.role": "network",
        "devenv.backend": backend.name,
        "devenv.daemon": "0123456789abcdef",
    }
    [config] = network["IPAM"]["Config"]
    subnet = ipaddress.IPv4Network(config["Subnet"])
    assert subnet.subnet_of(SUBNETS) and subnet.prefixlen == SUBNET_PREFIX  # not one of Docker's /16s
    bridge_mtu = client.api.inspect_network("bridge")["Options"].get("com.docker.network.driver.mtu")
    assert network["Options"].get("com.docker.network.driver.mtu") == bridge_mtu

    started = backend.start(handle)
    address, port = backend.internal_address(handle, SSH_PORT)
    assert ipaddress.IPv4Address(address) in subnet and port == SSH_PORT
    assert started.running


def test_networks_are_made_once_and_go_with_the_container(
    backend: DockerBackend, launch: Launch, workspace: str, client: docker.DockerClient
) -> None:
    name = network_name(workspace)
    client.api.create_network(name, driver="bridge", check_duplicate=True)  # a daemon killed mid-create made it
    handle = backend.create(launch(workspace))
    backend.create(launch(workspace))
    assert len([n for n in client.api.networks() if n["Name"] == name]) == 1
    backend.remove_container(handle)
    assert not [n for n in client.api.networks() if n["Name"] == name]
    backend.remove_container(handle)  # idempotent: container and network already gone

    backend.create(launch(workspace))  # a new container gets a new network
    assert [n for n in client.api.networks() if n["Name"] == name]
    backend.remove(handle, keep_volume=True)
    assert not [n for n in client.api.networks() if n["Name"] == name]
    assert client.volumes.get(handle.volume)


def test_what_else_joined_the_network_is_let_go_and_can_start_again(
    backend: DockerBackend, launch: Launch, workspace: str, light_image: Any, client: docker.DockerClient
) -> None:
    """An SSH test host joins workspace networks; a stopped one left on a removed network could not start."""
    handle = backend.create(launch(workspace))
    joined = [
        client.containers.create(
            light_image.tag, ["sleep", "60"], name=f"{workspace}-{kind}", labels={"devenv-test": "joined"}
        )
        for kind in ("running", "stopped")
    ]
    try:
        for container in joined:
            client.api.connect_container_to_network(container.id, network_name(workspace))
        joined[0].start()
        backend.start(handle)
        inspected = client.api.inspect_container(handle.container)
        own = inspected["NetworkSettings"]["Networks"][network_name(workspace)]["IPAddress"]
        client.api.connect_container_to_network(handle.container, "bridge")  # joined by hand: not the one used
        assert backend.internal_address(handle, SSH_PORT) == (own, SSH_PORT)

        backend.remove(handle, keep_volume=False)
        assert not [n for n in client.api.networks() if n["Name"] == network_name(workspace)]
        for container in joined:
            container.reload()
            assert network_name(workspace) not in container.attrs["NetworkSettings"]["Networks"]
        joined[1].start()  # not left pointing at a network that is gone
    finally:
        for container in joined:
            container.remove(force=True)


def test_a_pruned_network_is_made_again_at_start(
    backend: DockerBackend, launch: Launch, workspace: str, client: docker.DockerClient
) -> None:
    handle = backend.create(launch(workspace))
    client.api.remove_network(network_name(workspace))  # what `docker network prune` does to a stopped workspace's
    assert backend.start(handle).running
    assert client.api.inspect_network(network_name(workspace))["Labels"]["devenv.workspace"] == workspace
