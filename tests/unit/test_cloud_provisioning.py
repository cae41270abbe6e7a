"""The aws backend's EC2 side against moto's EC2 server (behind the fault-injecting proxy), with SSH left out:
the failover walk, the launch request, stop and terminate, prices, and the user data it boots with.
tests/integration/test_aws_backend.py runs the whole of it with a test sshd host playing the instance."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.backends.cloud.aws import AwsBackend
from devenv.backends.cloud.keys import login_key, new_key
from devenv.backends.cloud.offers import load_catalogue
from devenv.backends.cloud.user_data import READY_MARKER, SETUP_SCRIPT, cloud_config
from devenv.errors import DevenvError, NoCapacity
from devenv.progress import ProgressEvent
from devenv.spec.units import GpuRequest
from harness.ec2_cloud import FaultyEc2, ec2_client

REGIONS = ["us-east-1", "us-west-2"]


@pytest.fixture(scope="module")
def ec2() -> Iterator[FaultyEc2]:
    with FaultyEc2() as running:
        yield running


@pytest.fixture
def aws(ec2: FaultyEc2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AwsBackend:
    monkeypatch.setenv("DEVENV_HOME", str(tmp_path / "home"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    ec2.faults.clear()
    ec2.run_instances_calls.clear()
    return AwsBackend(regions=REGIONS, endpoint_url=ec2.endpoint, ami="ami-devenvtest", ssh_user="op")


def states(ec2: FaultyEc2, workspace: str) -> list[str]:
    found = []
    for region in REGIONS:
        answer = ec2_client(ec2.upstream, region).describe_instances(
            Filters=[{"Name": "tag:devenv.workspace", "Values": [workspace]}]
        )
        found += [item["State"]["Name"] for r in answer["Reservations"] for item in r["Instances"]]
    return found


def test_the_walk_skips_a_region_on_quota_and_a_zone_on_capacity_and_says_each_try(
    aws: AwsBackend, ec2: FaultyEc2
) -> None:
    a10 = [offer for offer in load_catalogue().offers if offer.instance_type == "g5.xlarge"]
    east = next(offer for offer in a10 if offer.region == "us-east-1")
    west = next(offer for offer in a10 if offer.region == "us-west-2")
    ec2.faults.capacity("g5.xlarge", east.zones[0])
    ec2.faults.capacity("g5.xlarge", east.zones[1])
    ec2.faults.quota("g5.xlarge", "us-east-1")
    said: list[ProgressEvent] = []
    instance = aws._launch("walk", GpuRequest(type="A10G", count=1), said.append)
    outcomes = [(call.zone, call.outcome) for call in ec2.run_instances_calls]
    assert outcomes[:2] == [
        (east.zones[0], "InsufficientInstanceCapacity"),
        (east.zones[1], "InsufficientInstanceCapacity"),
    ]
    assert outcomes[2] == (east.zones[2], "VcpuLimitExceeded") and outcomes[3] == (west.zones[0], "ok")
    assert len(outcomes) == 4  # no other us-east-1 zone was tried after the quota error, and no retries
    assert instance.zone == west.zones[0] and instance.price == pytest.approx(west.on_demand_price)
    messages = [event.message for event in said]
    assert any("InsufficientInstanceCapacity" in message for message in messages)
    assert messages[-1].startswith(f"launched {instance.id}: g5.xlarge in {west.zones[0]}")


def test_the_launch_asks_for_imdsv2_a_sized_disk_and_tags_that_find_it_again(aws: AwsBackend, ec2: FaultyEc2) -> None:
    instance = aws._launch("tagged", None, None)
    raw = ec2_client(ec2.upstream, instance.region).describe_instances(InstanceIds=[instance.id])
    described = raw["Reservations"][0]["Instances"][0]
    assert described["MetadataOptions"]["HttpTokens"] == "required"
    assert described["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    tags = {tag["Key"]: tag["Value"] for tag in described["Tags"]}
    assert tags["devenv.workspace"] == "tagged" and tags["devenv.managed"] == "true"
    assert tags["devenv.host-key"] and tags["devenv.daemon"] == aws.ec2.daemon
    user_data = ec2_client(ec2.upstream, instance.region).describe_instance_attribute(
        InstanceId=instance.id, Attribute="userData"
    )["UserData"]["Value"]
    import base64

    config = yaml.safe_load(base64.b64decode(user_data))
    assert config["ssh_keys"]["ed25519_public"].split()[1] == tags["devenv.host-key"]
    assert config["ssh_authorized_keys"] == [aws.login.public]
    assert [found.id for found in aws.ec2.instances(REGIONS, "tagged")] == [instance.id]
    other_daemon = AwsBackend.__new__(AwsBackend)  # another daemon (another login key) does not see it
    other_daemon.ec2 = type(aws.ec2)(endpoint_url=ec2.endpoint, daemon="someone-else")
    assert other_daemon.ec2.instances(REGIONS, "tagged") == []
    aws.release("tagged", keep_volume=False)
    assert states(ec2, "tagged") == ["terminated"]


def test_park_stops_by_default_and_terminates_by_policy_and_prices_follow(
    aws: AwsBackend, ec2: FaultyEc2, tmp_path: Path
) -> None:
    instance = aws._launch("parked", None, None)
    aws.list_workspaces = lambda: []  # type: ignore[method-assign]  (nothing to SSH to here)
    aws._seen["parked"] = instance
    assert aws.price("parked") == pytest.approx(instance.price)
    aws.park("parked")
    assert states(ec2, "parked") == ["stopped"] and aws.price("parked") is None
    terminating = AwsBackend(regions=REGIONS, endpoint_url=ec2.endpoint, ami="ami-devenvtest", on_stop="terminate")
    terminating._launch("gone", None, None)
    terminating.park("gone")
    assert states(ec2, "gone") == ["terminated"]
    aws.release("parked", keep_volume=False)
    assert states(ec2, "parked") == ["terminated"]


def test_nothing_fits_or_nothing_can_be_launched(aws: AwsBackend, ec2: FaultyEc2) -> None:
    with pytest.raises(NoCapacity, match="H100:16"):
        aws._launch("huge", GpuRequest(type="H100", count=16), None)
    assert ec2.run_instances_calls == []
    for offer in load_catalogue().offers:
        if offer.instance_type == "p4d.24xlarge" and offer.region in REGIONS:
            ec2.faults.quota("p4d.24xlarge", offer.region)
    for offer in load_catalogue().offers:
        if offer.instance_type == "p4de.24xlarge" and offer.region in REGIONS:
            for zone in offer.zones:
                ec2.faults.capacity("p4de.24xlarge", zone)
    with pytest.raises(NoCapacity, match="no offer could be launched") as caught:
        aws._launch("none", GpuRequest(type="A100", count=8), None)
    assert "VcpuLimitExceeded" in caught.value.message and "InsufficientInstanceCapacity" in caught.value.message
    assert states(ec2, "none") == []


def test_a_cached_machine_that_stopped_answering_is_looked_up_again_without_a_deadlock(aws: AwsBackend) -> None:
    class Dead:
        closed = False

        def ping(self) -> None:
            raise DevenvError("gone")

        def close(self) -> None:
            self.closed = True

    dead = Dead()
    instance = aws._launch("cached", None, None)
    aws._hosts["cached"] = (instance, dead)  # type: ignore[assignment]
    connected: list[Any] = []
    aws._connect = lambda found, progress, patient=True: connected.append(found) or Dead()  # type: ignore[method-assign]
    worker = threading.Thread(target=aws.provision, args=("cached", None, None), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "provision hung"
    assert dead.closed and [found.id for found in connected] == [instance.id]
    aws.release("cached", keep_volume=False)


def test_the_user_data_is_cloud_config_with_the_keys_and_a_script_sh_accepts(tmp_path: Path) -> None:
    host, login = new_key("devenv-host"), login_key(tmp_path / "cloud")
    text = cloud_config(host_key=host, login=login, user="ubuntu")
    assert text.startswith("#cloud-config\n")
    body = yaml.safe_load(text)
    assert body["ssh_keys"] == {"ed25519_private": host.private, "ed25519_public": host.public}
    assert body["ssh_deletekeys"] is True and body["ssh_authorized_keys"] == [login.public]
    script = body["runcmd"][0][2]
    assert "nvidia-container-toolkit" in script and "usermod -aG docker ubuntu" in script and READY_MARKER in script
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert SETUP_SCRIPT.count("{user}") == 1
    again = login_key(tmp_path / "cloud")
    assert again == login and (tmp_path / "cloud" / "id_ed25519").stat().st_mode & 0o077 == 0
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "cloud" / "id_ed25519")], capture_output=True, text=True, check=True
    )
    assert "ED25519" in fingerprint.stdout
