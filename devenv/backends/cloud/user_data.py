"""The cloud-config an instance boots with: devenv's host key and login key, then Docker and the NVIDIA
container toolkit, then a marker file that tells devenv the machine is ready for workspaces."""

from __future__ import annotations

import yaml

from devenv.backends.cloud.keys import KeyPair

READY_MARKER = "/var/lib/devenv/ready"

# Ubuntu 22.04/24.04: Docker from the archive; on a machine with an NVIDIA device, the server driver unless
# the image has one, and the container toolkit from NVIDIA's repository, set as a Docker runtime.
SETUP_SCRIPT = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q docker.io curl gnupg pciutils
if lspci | grep -qi nvidia; then
  command -v nvidia-smi >/dev/null || apt-get install -y -q nvidia-driver-550-server
  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \\
    | gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \\
    | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \\
    > /etc/apt/sources.list.d/nvidia-container-toolkit.list
  apt-get update -q
  apt-get install -y -q nvidia-container-toolkit
  nvidia-ctk runtime configure --runtime=docker
  systemctl restart docker
fi
usermod -aG docker {user}
mkdir -p /var/lib/devenv && touch {marker}
"""


def cloud_config(*, host_key: KeyPair, login: KeyPair, user: str) -> str:
    """The user data: text that cloud-init reads (boto3 base64-encodes it for EC2)."""
    body = {
        "ssh_deletekeys": True,
        "ssh_keys": {"ed25519_private": host_key.private, "ed25519_public": host_key.public},
        "ssh_authorized_keys": [login.public],
        "runcmd": [["sh", "-c", SETUP_SCRIPT.format(user=user, marker=READY_MARKER)]],
    }
    return "#cloud-config\n" + yaml.safe_dump(body, sort_keys=False, width=1000)
