"""Workspaces on EC2 instances devenv provisions: moto's EC2 in server mode (with capacity and quota errors
injected in front of it), and the launched instance played by a local test sshd host that reads the user data
(harness.ec2_cloud.CloudInit). The real CLI, a real devenvd, real ssh keys and the real engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devenv.backends.cloud.offers import load_catalogue
from devenv.testing.projects import WorkspaceImage, copy_project
from harness.cloud_init import CloudInit
from harness.devenvd import Devenvd
from harness.ec2_cloud import FaultyEc2, ec2_client
from harness.ssh_host import SshDockerHost, start_ssh_host

REGIONS = ["us-east-1", "us-west-2"]
TYPE = "g4dn.xlarge"  # the cheapest offer: what a workspace without a GPU type gets


@pytest.fixture(scope="module")
def host(cpu_base: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshDockerHost]:
    made = start_ssh_host("devenv-it-aws-host", index=4, workdir=tmp_path_factory.mktemp("aws-host"))
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def cloud(host: SshDockerHost) -> Iterator[tuple[FaultyEc2, CloudInit]]:
    with FaultyEc2() as ec2, CloudInit(ec2.endpoint, REGIONS, [host]) as init:
        yield ec2, init
        init.check()


@pytest.fixture
def daemon(cloud: tuple[FaultyEc2, CloudInit], host: SshDockerHost, tmp_path: Path) -> Iterator[Devenvd]:
    ec2, _ = cloud
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "daemon.yaml").write_text(
        yaml.safe_dump(
            {
                "backends": {
                    "aws": {
                        "type": "aws",
                        "endpoint_url": ec2.endpoint,
                        "regions": REGIONS,
                        "ssh_user": host.user,
                        "address_map": {"*": host.address},
                        "ami": "ami-devenvtest",
                        "on_stop": "stop",
                    }
                }
            }
        )
    )
    running = Devenvd(
        home=home,
        env={
            "DEVENV_RECONCILE_INTERVAL": "1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    running.start()
    yield running
    running.cleanup()


def live_instances(ec2: FaultyEc2) -> list[dict[str, object]]:
    found = []
    for region in REGIONS:
        answer = ec2_client(ec2.upstream, region).describe_instances(
            Filters=[{"Name": "tag:devenv.managed", "Values": ["true"]}]
        )
        found += [
            item
            for reservation in answer["Reservations"]
            for item in reservation["Instances"]
            if item["State"]["Name"] != "terminated"
        ]
    return found


def test_up_fails_over_runs_stops_starts_and_rm_leaves_nothing(
    daemon: Devenvd, cloud: tuple[FaultyEc2, CloudInit], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    ec2, init = cloud
    offers = [offer for offer in load_catalogue().offers if offer.instance_type == TYPE]
    west = next(offer for offer in offers if offer.region == "us-west-2")
    ec2.faults.quota(TYPE, "us-east-1")  # no vCPU quota there: every us-east-1 zone of that type is skipped
    ec2.faults.capacity(TYPE, west.zones[0])  # and no capacity in the first us-west-2 zone

    folder = copy_project(light_image, tmp_path / "p", "it-cloud")
    up = daemon.cli("up", "--on", "aws", cwd=folder, check=True)
    assert "it-cloud: running on aws" in up.stdout
    calls = [(call.instance_type, call.zone, call.outcome) for call in ec2.run_instances_calls]
    assert calls[0][0] == TYPE and calls[0][1].startswith("us-east-1") and calls[0][2] == "VcpuLimitExceeded"
    assert calls[1:] == [(TYPE, west.zones[0], "InsufficientInstanceCapacity"), (TYPE, west.zones[1], "ok")]
    shown = up.stdout + up.stderr
    assert "VcpuLimitExceeded" in shown and "InsufficientInstanceCapacity" in shown
    assert f"launching {TYPE} in {west.zones[1]}" in shown

    (instance,) = live_instances(ec2)
    assert instance["InstanceType"] == TYPE and instance["Placement"]["AvailabilityZone"] == west.zones[1]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    listed = daemon.workspaces()["it-cloud"]
    assert listed["backend"] == "aws" and listed["price_per_hour"] == pytest.approx(west.on_demand_price, abs=1e-4)
    assert f"${west.on_demand_price:.3f}/h" in daemon.cli("ls", check=True).stdout
    daemon.cli("exec", "it-cloud", "--", "sh", "-c", "echo kept > ~/note", check=True)
    machines = json.loads(daemon.cli("host", "ls", "--json", check=True).stdout)
    machine = next(item for item in machines if item["name"] == "aws:it-cloud")
    assert machine["instance"]["id"] == instance["InstanceId"] and machine["instance"]["type"] == TYPE
    assert machine["reachable"] and machine["facts"]["engine_version"]
    assert f"running {TYPE} {west.zones[1]}" in daemon.cli("host", "ls", check=True).stdout
    pinned = (daemon.home / "known_hosts").read_text()
    assert init.host_of(str(instance["InstanceId"])).host_public_key().split()[1] in pinned

    daemon.cli("stop", "it-cloud", check=True)
    (stopped,) = live_instances(ec2)
    assert stopped["State"]["Name"] == "stopped"
    assert daemon.workspaces()["it-cloud"]["price_per_hour"] is None

    daemon.cli("start", "it-cloud", check=True)
    (started,) = live_instances(ec2)
    assert started["State"]["Name"] == "running" and started["InstanceId"] == instance["InstanceId"]
    assert daemon.cli("exec", "it-cloud", "--", "cat", "/home/dev/note", check=True).stdout == "kept\n"

    daemon.cli("rm", "it-cloud", check=True)
    assert live_instances(ec2) == []
    volumes = ec2_client(ec2.upstream, "us-west-2").describe_volumes(
        Filters=[{"Name": "tag:devenv.workspace", "Values": ["it-cloud"]}]
    )["Volumes"]
    assert volumes == []
    assert "it-cloud" not in daemon.workspaces()


def test_no_offer_fits_and_nothing_is_launched(
    daemon: Devenvd, cloud: tuple[FaultyEc2, CloudInit], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    ec2, _ = cloud
    folder = copy_project(light_image, tmp_path / "p", "it-huge", replace={"cpu: 2": "cpu: 2\n  gpu: H100:16"})
    refused = daemon.cli("up", "--on", "aws", cwd=folder)
    assert refused.returncode != 0 and "H100:16" in refused.stderr and "devenv offers" in refused.stderr
    assert ec2.run_instances_calls == [] and live_instances(ec2) == []
    assert "it-huge" not in daemon.workspaces()

    listed = json.loads(daemon.cli("offers", "--gpu", "A100:1", "--json", check=True).stdout)
    assert listed["items"][0]["instance_type"] == "p4d.24xlarge"
    prices = [item["price"] for item in listed["items"]]
    assert prices == sorted(prices)


def test_rm_keep_volume_keeps_the_disk_tagged_and_terminates_the_instance(
    daemon: Devenvd, cloud: tuple[FaultyEc2, CloudInit], light_image: WorkspaceImage, tmp_path: Path
) -> None:
    ec2, _ = cloud
    folder = copy_project(light_image, tmp_path / "p", "it-keep")
    daemon.cli("up", "--on", "aws", cwd=folder, check=True)
    (instance,) = live_instances(ec2)
    region = instance["Placement"]["AvailabilityZone"][:-1]
    daemon.cli("rm", "--keep-volume", "it-keep", check=True)
    assert live_instances(ec2) == []
    client = ec2_client(ec2.upstream, region)
    kept = client.describe_volumes(Filters=[{"Name": "tag:devenv.workspace", "Values": ["it-keep"]}])["Volumes"]
    try:
        assert kept and all({"Key": "devenv.kept", "Value": "true"} in volume["Tags"] for volume in kept)
        assert all(volume["State"] == "available" for volume in kept)
    finally:
        for volume in kept:
            client.delete_volume(VolumeId=volume["VolumeId"])
