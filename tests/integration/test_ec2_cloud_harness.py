"""The fake AWS the aws backend's tests stand on (harness.ec2_cloud): the proxy refuses exactly the
launches it is told to with AWS's own error codes and passes the rest to moto, and CloudInit turns a launched
instance into an sshd that presents the host key from its user data and follows the instance's state."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from botocore.exceptions import ClientError

from devenv.lock.models import BaseImage
from harness.cloud_init import CloudInit
from harness.ec2_cloud import FaultyEc2
from harness.ssh_host import start_ssh_host

pytestmark = pytest.mark.integration

MANAGED = [
    {
        "ResourceType": "instance",
        "Tags": [{"Key": "devenv.managed", "Value": "true"}, {"Key": "devenv.workspace", "Value": "harness"}],
    }
]
IMDSV2 = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}


def launch(client: Any, instance_type: str, zone: str | None = None, **extra: Any) -> dict[str, Any]:
    placement = {"Placement": {"AvailabilityZone": zone}} if zone else {}
    answer = client.run_instances(
        ImageId="ami-0123456789abcdef0",
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=MANAGED,
        **placement,
        **extra,
    )
    return answer["Instances"][0]


def refused(call: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def test_faults_refuse_the_launches_named_and_everything_else_reaches_moto(tmp_path: Path) -> None:
    with FaultyEc2() as ec2:
        once = {"total_max_attempts": 1}  # each call once: botocore retries 500s
        east, west = ec2.client("us-east-1", retries=once), ec2.client("us-west-2", retries=once)
        ec2.faults.capacity("g5.xlarge", "us-east-1a")
        ec2.faults.quota("p4d.24xlarge", "us-west-2")

        capacity = refused(lambda: launch(east, "g5.xlarge", "us-east-1a"))
        assert capacity.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert capacity.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert "g5.xlarge capacity in the Availability Zone you requested (us-east-1a)" in str(capacity)

        made = launch(east, "g5.xlarge", "us-east-1b")
        described = east.describe_instances(InstanceIds=[made["InstanceId"]])["Reservations"][0]["Instances"][0]
        assert described["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert described["InstanceType"] == "g5.xlarge"

        quota = refused(lambda: launch(west, "p4d.24xlarge"))
        assert quota.response["Error"]["Code"] == "VcpuLimitExceeded"
        assert quota.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "current vCPU limit of 0" in str(quota)

        assert ec2.run_instances_calls == [
            ("g5.xlarge", "us-east-1a", "us-east-1", "InsufficientInstanceCapacity"),
            ("g5.xlarge", "us-east-1b", "us-east-1", "ok"),
            ("p4d.24xlarge", None, "us-west-2", "VcpuLimitExceeded"),
        ]

        # other calls pass untouched, and are not recorded
        _, public = keygen(tmp_path / "key", "harness")
        key = west.import_key_pair(KeyName="harness", PublicKeyMaterial=public.encode())
        assert key["KeyName"] == "harness"
        group = west.create_security_group(GroupName="harness-ssh", Description="harness")["GroupId"]
        assert west.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["GroupName"] == "harness-ssh"
        duplicate = refused(lambda: west.create_security_group(GroupName="harness-ssh", Description="harness"))
        assert duplicate.response["Error"]["Code"] == "InvalidGroup.Duplicate"  # moto's own error comes back

        # a zone given through a subnet counts as that zone
        subnet = east.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}])
        subnet_id = subnet["Subnets"][0]["SubnetId"]
        refused(lambda: launch(east, "g5.xlarge", SubnetId=subnet_id))
        assert ec2.run_instances_calls[-1] == ("g5.xlarge", "us-east-1a", "us-east-1", "InsufficientInstanceCapacity")

        # botocore retries a 500, as it would against AWS: every attempt reaches the proxy and is recorded
        # ("max_attempts" counts retries: 2 of them make 3 attempts)
        retrying = ec2.client("us-east-1", retries={"mode": "standard", "max_attempts": 2})
        before = len(ec2.run_instances_calls)
        assert "(reached max retries: 2)" in str(refused(lambda: launch(retrying, "g5.xlarge", "us-east-1a")))
        assert len(ec2.run_instances_calls) - before == 3

        ec2.faults.clear()
        launch(east, "g5.xlarge", "us-east-1a")
        launch(west, "p4d.24xlarge")
        assert [call.outcome for call in ec2.run_instances_calls[-2:]] == ["ok", "ok"]


def keygen(path: Path, comment: str) -> tuple[str, str]:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


def cloud_config(host_private: str, host_public: str, login_public: str) -> str:
    return (
        "#cloud-config\nssh_deletekeys: true\nssh_keys:\n  ed25519_private: |\n"
        + textwrap.indent(host_private, "    ")
        + f"  ed25519_public: {host_public}\nssh_authorized_keys:\n  - {login_public}\nruncmd:\n"
        + '  - [sh, -c, "mkdir -p /var/lib/devenv && touch /var/lib/devenv/ready"]\n'
    )


def ssh(address: str, identity: Path, known_hosts: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(identity),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            f"op@{address}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.2)


def refuses_tcp(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1):
            return False
    except OSError:
        return True


def test_cloud_init_serves_the_user_data_keys_and_follows_the_instance(cpu_base: BaseImage, tmp_path: Path) -> None:
    host_private, host_public = keygen(tmp_path / "host_key", "devenv-host")
    _, login_public = keygen(tmp_path / "login", "devenv")
    (tmp_path / "fixture").mkdir()
    host = start_ssh_host("devenv-it-cloud-host", index=3, workdir=tmp_path / "fixture")
    engine = docker.from_env()
    labels = {"devenv.workspace": "harness"}  # the instance's workspace tag, as a workspace's objects carry it
    older = engine.volumes.create("devenv-it-harness-older", labels=labels)  # there before the instance
    try:
        with FaultyEc2() as ec2, CloudInit(ec2.endpoint, ["us-east-1"], [host]) as cloud:
            assert not host.is_running()  # a free host waits stopped, like an instance still booting
            client = ec2.client("us-east-1")
            instance = launch(
                client,
                "g5.xlarge",
                "us-east-1a",
                MetadataOptions=IMDSV2,
                UserData=cloud_config(host_private, host_public, login_public),
            )
            instance_id = instance["InstanceId"]
            assert cloud.wait_applied(instance_id) is host
            assert cloud.address_of(instance_id) == host.address and instance_id in cloud.applied

            known = tmp_path / "known_hosts"
            known.write_text(f"{host.address} {host_public}\n")  # only the key devenv generated
            done = ssh(host.address, tmp_path / "login", known, "test -f /var/lib/devenv/ready && echo ready")
            assert (done.returncode, done.stdout.strip()) == (0, "ready"), done.stderr
            assert host.host_public_key() == " ".join(host_public.split()[:2])
            assert ssh(host.address, host.identity, known, "true").returncode == 0  # the fixture's key still works

            # what a workspace makes through the instance lives on the shared engine: it must go with the instance
            engine.volumes.create("devenv-it-harness-home", labels=labels)
            network = engine.networks.create("devenv-it-harness-net", driver="bridge", labels=labels)
            network.connect(host.name)  # as the host joins each workspace network

            client.stop_instances(InstanceIds=[instance_id])
            eventually(lambda: refuses_tcp(host.address), 10, f"{host.address}:22 still answers after the stop")
            cloud.wait_state(instance_id, "stopped")

            client.start_instances(InstanceIds=[instance_id])
            eventually(
                lambda: ssh(host.address, tmp_path / "login", known, "test -f /var/lib/devenv/ready").returncode == 0,
                30,
                "ssh with the pinned key did not work again after the start",
            )
            assert cloud.state_of(instance_id) == "running"

            client.terminate_instances(InstanceIds=[instance_id])
            cloud.wait_state(instance_id, "terminated")
            assert not host.is_running() and cloud.host_of(instance_id) is None
            left = {volume.name for volume in engine.volumes.list(filters={"label": "devenv.workspace=harness"})}
            assert left == {older.name}, left  # the instance's went with it; what was there before stays
            assert engine.networks.list(names=[network.name]) == []
            host.start()  # it left the removed network: it starts again
            host.stop()
    finally:
        host.remove()
        for name in ("devenv-it-harness-home", older.name):
            with contextlib.suppress(docker.errors.NotFound):
                engine.volumes.get(name).remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            engine.networks.get("devenv-it-harness-net").remove()


def test_cloud_init_reports_what_it_cannot_do_instead_of_hanging() -> None:
    with FaultyEc2() as ec2:
        cloud = CloudInit(ec2.endpoint, ["eu-west-1"], []).start()
        instance_id = launch(ec2.client("eu-west-1"), "g5.xlarge")["InstanceId"]
        with pytest.raises(RuntimeError, match=f"instance {instance_id} is running but all 0 test hosts are taken"):
            cloud.wait_applied(instance_id, timeout=30)
        with pytest.raises(RuntimeError, match="all 0 test hosts"):
            cloud.stop()
