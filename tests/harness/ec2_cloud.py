"""A fake AWS for the aws backend's tests: moto's EC2 behind a proxy that can refuse launches; and (in
harness.cloud_init) a "cloud-init" that turns each launched instance into a real sshd (an SshDockerHost)
holding the keys from its user data.

    daemon --EC2 API--> FaultyEc2 (127.0.0.1, injects capacity/quota errors on RunInstances) --> moto server
    daemon --ssh------> SshDockerHost, configured by CloudInit from the instance's cloud-config

Moto keeps its state process-wide (every moto server in a process shares it, S3Server's too): instances from
earlier tests stay listed, so CloudInit ignores those it saw when it started.

Moto gives each instance a random public IP, and a new one at every start (as EC2 does without an Elastic IP);
the test hosts have fixed addresses. With one host, the daemon's `address_map` sends "*" to that host's address.
A test that runs several instances needs one host per instance and a per-instance mapping: `address_of(id)`
says which host address stands for which instance (a mapping keyed by public IP goes stale at every start).
"""

from __future__ import annotations

import http.client
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from harness.s3_server import S3Server

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto takes any
TAG_MANAGED = "devenv.managed"
READY_MARKER = "/var/lib/devenv/ready"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


def ec2_client(endpoint: str, region: str, **config: Any) -> Any:
    """A boto3 EC2 client for `endpoint` with the fake credentials; `config` goes to botocore's Config, e.g.
    retries={"total_max_attempts": 1} to send a call once: botocore retries 500s (a capacity fault), as
    against AWS, and its "max_attempts" counts retries, not attempts."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(**config),
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )


class Fault(NamedTuple):
    code: str
    message: str
    status: int


class RunInstancesCall(NamedTuple):
    """One RunInstances request as the proxy saw it (a botocore retry is another call); equal to a plain tuple."""

    instance_type: str
    zone: str | None  # Placement.AvailabilityZone, else the zone of the subnet asked for, else None
    region: str
    outcome: str  # "ok", or the error code answered (a fault's, or moto's own)


class Faults:
    """What RunInstances refuses: keyed by (instance type, zone) or (instance type, region); zone wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_zone: dict[tuple[str, str], Fault] = {}
        self._by_region: dict[tuple[str, str], Fault] = {}

    def capacity(self, instance_type: str, zone: str, *, status: int = 500) -> None:
        """InsufficientInstanceCapacity for the type in the zone: a 500, which botocore retries (as with AWS)."""
        self.add(
            instance_type,
            zone=zone,
            fault=Fault(
                "InsufficientInstanceCapacity",
                f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested "
                f"({zone}). Our system will be working on provisioning additional capacity. You can currently get "
                f"{instance_type} capacity by not specifying an Availability Zone in your launch request or choosing "
                "a different Availability Zone.",
                status,
            ),
        )

    def quota(self, instance_type: str, region: str, *, status: int = 400) -> None:
        """VcpuLimitExceeded for the type anywhere in the region (a vCPU quota of 0 for its bucket)."""
        self.add(
            instance_type,
            region=region,
            fault=Fault(
                "VcpuLimitExceeded",
                "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance "
                "bucket that the specified instance type belongs to. Please visit "
                "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
                status,
            ),
        )

    def add(self, instance_type: str, *, fault: Fault, zone: str | None = None, region: str | None = None) -> None:
        """Any other refusal, by zone or by region (exactly one of them)."""
        if (zone is None) == (region is None):
            raise ValueError("give a zone or a region")
        with self._lock:
            if zone is not None:
                self._by_zone[(instance_type, zone)] = fault
            else:
                self._by_region[(instance_type, str(region))] = fault

    def clear(self) -> None:
        with self._lock:
            self._by_zone.clear()
            self._by_region.clear()

    def match(self, instance_type: str, zone: str | None, region: str) -> Fault | None:
        with self._lock:
            found = self._by_zone.get((instance_type, zone)) if zone else None
            return found or self._by_region.get((instance_type, region))


def _region(headers: Any) -> str:
    """The region a SigV4 request was signed for (endpoint_url hides it from the Host), else us-east-1."""
    scope = re.search(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/", headers.get("Authorization", ""))
    host = re.match(r"ec2\.([a-z0-9-]+)\.amazonaws\.com", headers.get("Host", ""))
    return scope.group(1) if scope else host.group(1) if host else "us-east-1"


def _error_code(body: bytes) -> str:
    found = re.search(rb"<Code>([^<]*)</Code>", body)
    return found.group(1).decode() if found else "error"


def _error_body(fault: Fault) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries a Content-Length
    owner: FaultyEc2

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # botocore never sends chunked here
        status, headers, answer = self.owner._answer(self.command, self.path, self.headers, body)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _relay

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FaultyEc2:
    """An EC2 endpoint: everything goes to moto as sent (the Host header included: moto routes on the SigV4
    scope and checks no signature), except the RunInstances calls that `faults` refuses.

    `upstream` is a running moto's URL; by default a moto server is started here and closed with this."""

    def __init__(self, upstream: str | None = None) -> None:
        self.faults = Faults()
        self.run_instances_calls: list[RunInstancesCall] = []
        self._moto = None if upstream else S3Server("127.0.0.1")  # S3Server is a plain moto server
        self._upstream = upstream
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FaultyEc2:
        try:
            if self._moto is not None:
                self._upstream = self._moto.__enter__().endpoint()
            handler = type("Relay", (_Relay,), {"owner": self})
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-ec2", daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> FaultyEc2:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._moto is not None:
            self._moto.__exit__(None, None, None)
        self._server = self._thread = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running (start() it or use it as a context manager)")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def upstream(self) -> str:
        """moto's own URL: calls there bypass the faults and are not recorded."""
        if self._upstream is None:
            raise RuntimeError("the proxy is not running")
        return self._upstream

    def client(self, region: str = "us-east-1", **config: Any) -> Any:
        """A boto3 EC2 client through the proxy (see ec2_client)."""
        return ec2_client(self.endpoint, region, **config)

    def _answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        params = {key: values[0] for key, values in parse_qs(urlsplit(path).query).items()}
        if method == "POST" and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
            params |= {key: values[0] for key, values in parse_qs(body.decode(errors="replace")).items()}
        if params.get("Action") != "RunInstances":
            return self._forward(method, path, headers, body)
        instance_type, region = params.get("InstanceType", ""), _region(headers)
        zone = params.get("Placement.AvailabilityZone") or self._subnet_zone(region, params)
        fault = self.faults.match(instance_type, zone, region)
        if fault is not None:
            answer = (fault.status, [("Content-Type", "text/xml;charset=UTF-8")], _error_body(fault))
        else:
            answer = self._forward(method, path, headers, body)
        with self._lock:
            outcome = "ok" if answer[0] < 300 else _error_code(answer[2])
            self.run_instances_calls.append(RunInstancesCall(instance_type, zone, region, outcome))
        return answer

    def _subnet_zone(self, region: str, params: dict[str, str]) -> str | None:
        """The zone of the subnet a launch names (SubnetId, or its first network interface's), from moto."""
        subnet = params.get("SubnetId") or params.get("NetworkInterface.1.SubnetId")
        if not subnet:
            return None
        from botocore.exceptions import ClientError

        try:
            found = ec2_client(self.upstream, region).describe_subnets(SubnetIds=[subnet])["Subnets"]
        except ClientError:
            return None  # moto will refuse the launch itself
        return str(found[0]["AvailabilityZone"]) if found else None

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            answer = response.read()
            kept = [(name, value) for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP]
            return response.status, kept, answer
        finally:
            connection.close()
