"""EC2 through boto3: launch one instance for a workspace, find it again by its tags, stop, start, terminate.

What devenv made carries tags (`devenv.managed`, `devenv.workspace`, `devenv.daemon`, `devenv.price`), so
the instances themselves say which workspace they serve and what they cost: nothing about them needs to
be stored. botocore's errors become devenv errors here; a launch refused for capacity or quota becomes
`Unavailable`, which the provisioner answers by trying the next offer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from devenv.backends.cloud.offers import Placement
from devenv.errors import BackendError, ToolMissing

TAG_MANAGED = "devenv.managed"
TAG_WORKSPACE = "devenv.workspace"
TAG_DAEMON = "devenv.daemon"
TAG_PRICE = "devenv.price"  # USD per hour, as launched (on-demand or spot)
TAG_HOST_KEY = "devenv.host-key"  # its ed25519 host key (public, base64): pinned again when its address changes
TAG_KEPT = "devenv.kept"  # a volume kept after its workspace was removed (`devenv rm --keep-volume`)

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "Unsupported",
        "SpotMaxPriceTooLow",
        "InsufficientFreeAddressesInSubnet",
    }
)
QUOTA_CODES = frozenset(
    {"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "PendingVerification"}
)
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


class Unavailable(BackendError):
    """This offer cannot be launched now: `kind` "capacity" (try another zone) or "quota" (another type or region)."""

    code = "offer_unavailable"

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Instance:
    id: str
    region: str
    zone: str
    instance_type: str
    state: str
    workspace: str
    price: float | None
    address: str | None  # the public address (private when it has none)
    host_key: str | None = None  # TAG_HOST_KEY


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ToolMissing("the aws backend needs boto3", hint="pip install 'devenv[aws]'") from None
    return boto3


class Ec2:
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        daemon: str = "",
        ami: str | dict[str, str] | None = None,
        ssh_cidr: str = "0.0.0.0/0",
        root_gib: int = 200,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.daemon = daemon
        self.ami = ami
        self.ssh_cidr = ssh_cidr
        self.root_gib = root_gib
        self._clients: dict[str, Any] = {}

    def client(self, region: str, *, launching: bool = False) -> Any:
        """A client per region; for launches one that does not retry: a refused launch (capacity, HTTP 500)
        is answered by the next offer at once, not by botocore's backoff on the same one."""
        key = f"{region}/launch" if launching else region
        if key not in self._clients:
            from botocore.config import Config

            attempts = 1 if launching else 3
            config = Config(
                retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=10, read_timeout=60
            )
            self._clients[key] = _boto3().client(
                "ec2", region_name=region, endpoint_url=self.endpoint_url, config=config
            )
        return self._clients[key]

    @contextmanager
    def _calling(self, call: str, region: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", exc))
            if code in CAPACITY_CODES:
                raise Unavailable(f"{code}: {message}", kind="capacity") from exc
            if code in QUOTA_CODES:
                raise Unavailable(f"{code}: {message}", kind="quota") from exc
            hint = (
                "check the AWS credentials and their IAM permissions"
                if "Auth" in code or "Unauthorized" in code
                else None
            )
            raise BackendError(f"AWS {call} in {region} failed: {code}: {message}", hint=hint) from exc
        except BotoCoreError as exc:
            raise BackendError(
                f"AWS {call} in {region} failed: {exc}",
                hint="give AWS credentials the usual way (AWS_PROFILE, AWS_ACCESS_KEY_ID...)",
            ) from exc

    # -- finding -------------------------------------------------------------------------------

    def instances(self, regions: list[str], workspace: str | None = None) -> list[Instance]:
        """devenv's live instances (this daemon's) in the regions: one DescribeInstances per region."""
        filters = [
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
        if self.daemon:
            filters.append({"Name": f"tag:{TAG_DAEMON}", "Values": [self.daemon]})
        if workspace:
            filters.append({"Name": f"tag:{TAG_WORKSPACE}", "Values": [workspace]})
        found = []
        for region in regions:
            with self._calling("DescribeInstances", region):
                pages = self.client(region).get_paginator("describe_instances").paginate(Filters=filters)
                for page in pages:
                    for reservation in page.get("Reservations", []):
                        found += [_instance(raw, region) for raw in reservation.get("Instances", [])]
        return found

    def refresh(self, instance: Instance) -> Instance:
        with self._calling("DescribeInstances", instance.region):
            answer = self.client(instance.region).describe_instances(InstanceIds=[instance.id])
        raw = answer["Reservations"][0]["Instances"][0]
        return _instance(raw, instance.region)

    # -- launching -----------------------------------------------------------------------------

    def image(self, region: str) -> str:
        """The AMI: the configured one, else Canonical's newest Ubuntu 22.04 for x86_64."""
        if isinstance(self.ami, str):
            return self.ami
        if isinstance(self.ami, dict) and region in self.ami:
            return self.ami[region]
        with self._calling("DescribeImages", region):
            images = (
                self.client(region)
                .describe_images(
                    Owners=["099720109477"],
                    Filters=[
                        {"Name": "name", "Values": ["ubuntu/images/hvm-ssd*/ubuntu-jammy-22.04-amd64-server-*"]},
                        {"Name": "state", "Values": ["available"]},
                    ],
                )
                .get("Images", [])
            )
        if not images:
            raise BackendError(
                f"no Ubuntu 22.04 image found in {region}",
                hint="set `ami:` (an id, or a mapping of region to id) for the aws backend",
            )
        return str(max(images, key=lambda image: image.get("CreationDate", ""))["ImageId"])

    def security_group(self, region: str) -> str:
        """`devenv-ssh` in the default VPC: SSH in from `ssh_cidr`, made once per region."""
        ec2 = self.client(region)
        with self._calling("DescribeSecurityGroups", region):
            found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["devenv-ssh"]}])
        if found.get("SecurityGroups"):
            return str(found["SecurityGroups"][0]["GroupId"])
        with self._calling("CreateSecurityGroup", region):
            group = ec2.create_security_group(GroupName="devenv-ssh", Description="devenv: SSH to workspace hosts")[
                "GroupId"
            ]
            ec2.authorize_security_group_ingress(
                GroupId=group,
                IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": self.ssh_cidr}]}
                ],
            )
        return str(group)

    def launch(self, placement: Placement, *, workspace: str, user_data: str, spot: bool, host_key: str) -> Instance:
        offer, region = placement.offer, placement.region
        price = offer.price(spot)
        tags = [
            {"Key": TAG_MANAGED, "Value": "true"},
            {"Key": TAG_WORKSPACE, "Value": workspace},
            {"Key": TAG_DAEMON, "Value": self.daemon},
            {"Key": TAG_PRICE, "Value": f"{price or 0:.4f}"},
            {"Key": TAG_HOST_KEY, "Value": host_key},
            {"Key": "Name", "Value": f"devenv-{workspace}"},
        ]
        arguments: dict[str, Any] = {
            "ImageId": self.image(region),
            "InstanceType": offer.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": user_data,
            "Placement": {"AvailabilityZone": placement.zone},
            "SecurityGroupIds": [self.security_group(region)],
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": {"VolumeSize": self.root_gib, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            ],
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
        }
        if spot:
            arguments["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
            }
        with self._calling("RunInstances", region):
            raw = self.client(region, launching=True).run_instances(**arguments)["Instances"][0]
        return _instance(raw, region)

    def wait(
        self,
        instance: Instance,
        state: str,
        *,
        timeout: float = 600,
        tick: Callable[[Instance, float], None] | None = None,
    ) -> Instance:
        """Poll until the instance is in `state` (and, for running, has an address)."""
        started = time.monotonic()
        while True:
            current = self.refresh(instance)
            if current.state == state and (state != "running" or current.address):
                return current
            waited = time.monotonic() - started
            if current.state in ("terminated", "shutting-down") and state != "terminated":
                raise BackendError(
                    f"instance {instance.id} ({instance.instance_type}, {instance.zone}) went "
                    f"{current.state} while devenv waited for it to be {state}"
                )
            if waited > timeout:
                raise BackendError(f"instance {instance.id} is still {current.state} after {timeout:.0f}s")
            if tick is not None:
                tick(current, waited)
            time.sleep(1.0)

    # -- stopping and removing -----------------------------------------------------------------

    def stop(self, instance: Instance) -> None:
        with self._calling("StopInstances", instance.region):
            self.client(instance.region).stop_instances(InstanceIds=[instance.id])

    def start(self, instance: Instance) -> None:
        with self._calling("StartInstances", instance.region):
            self.client(instance.region).start_instances(InstanceIds=[instance.id])

    def terminate(self, instance: Instance, *, keep_volumes: bool) -> list[str]:
        """Terminate; its volumes go with it, or are kept (tagged) when asked. Returns the kept volumes' ids."""
        ec2 = self.client(instance.region)
        kept: list[str] = []
        if keep_volumes:
            with self._calling("DescribeInstances", instance.region):
                raw = ec2.describe_instances(InstanceIds=[instance.id])["Reservations"][0]["Instances"][0]
            mappings = raw.get("BlockDeviceMappings", [])
            with self._calling("ModifyInstanceAttribute", instance.region):
                ec2.modify_instance_attribute(
                    InstanceId=instance.id,
                    BlockDeviceMappings=[
                        {"DeviceName": m["DeviceName"], "Ebs": {"DeleteOnTermination": False}} for m in mappings
                    ],
                )
                kept = [m["Ebs"]["VolumeId"] for m in mappings if m.get("Ebs")]
                if kept:
                    ec2.create_tags(Resources=kept, Tags=[{"Key": TAG_KEPT, "Value": "true"}])
        with self._calling("TerminateInstances", instance.region):
            ec2.terminate_instances(InstanceIds=[instance.id])
        return kept

    def delete_volume(self, region: str, volume: str) -> None:
        with self._calling("DeleteVolume", region):
            self.client(region).delete_volume(VolumeId=volume)

    def volumes(self, region: str, workspace: str) -> list[dict[str, Any]]:
        with self._calling("DescribeVolumes", region):
            return list(
                self.client(region)
                .describe_volumes(Filters=[{"Name": f"tag:{TAG_WORKSPACE}", "Values": [workspace]}])
                .get("Volumes", [])
            )


def _instance(raw: dict[str, Any], region: str) -> Instance:
    tags = {tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])}
    price = tags.get(TAG_PRICE)
    return Instance(
        id=raw["InstanceId"],
        region=region,
        zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        instance_type=raw.get("InstanceType", ""),
        state=raw.get("State", {}).get("Name", "?"),
        workspace=tags.get(TAG_WORKSPACE, ""),
        price=float(price) if price else None,
        address=raw.get("PublicIpAddress") or raw.get("PrivateIpAddress"),
        host_key=tags.get(TAG_HOST_KEY),
    )
