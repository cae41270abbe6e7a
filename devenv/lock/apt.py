"""Pinning apt packages: the script that asks apt inside the base image, and parsing its answer.

apt itself computes the dependency closure against what the base already has; we record every
.deb it would fetch with version, URL and SHA256, so the build can fetch and verify them on the
host and install them with dpkg, offline.
"""

from __future__ import annotations

from urllib.parse import unquote

from devenv.errors import LockError
from devenv.lock.models import AptPackage

# Runs inside the base image (with network). Prints one line per .deb:
#   URL<TAB>FILENAME<TAB>SIZE, then a separator, then `apt-cache show` stanzas for the same versions.
RESOLVE_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -qq --no-install-recommends --print-uris "$@" > /tmp/uris
cat /tmp/uris
echo '--- stanzas ---'
apt-get install -s -qq --no-install-recommends "$@" \
  | awk '/^Inst /{for(i=3;i<=NF;i++) if ($i ~ /^\(/) {print $2"="substr($i,2); break}}' \
  | xargs -r apt-cache show --no-all-versions
"""


def parse_resolution(output: str) -> list[AptPackage]:
    uris_part, _, stanzas_part = output.partition("--- stanzas ---")
    # --print-uris names files NAME_VERSION_ARCH.deb with the epoch ("1:") url-encoded; the pool's
    # Filename has no epoch. Match on (name, version, arch) instead of on file names.
    fetched: dict[str, tuple[str, int]] = {}
    for line in uris_part.splitlines():
        if not line.startswith("'"):
            continue
        url, filename, size_text, *_ = line.split()
        fetched[unquote(filename)] = (url.strip("'"), int(size_text))
    packages: list[AptPackage] = []
    for stanza in stanzas_part.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if sep and not line.startswith(" "):
                fields[key] = value
        if "Filename" not in fields:
            continue
        key = f"{fields['Package']}_{fields['Version']}_{fields['Architecture']}.deb"
        if key not in fetched:
            continue
        url, size = fetched.pop(key)
        packages.append(
            AptPackage(
                name=fields["Package"],
                version=fields["Version"],
                arch=fields["Architecture"],
                filename=fields["Filename"].rsplit("/", 1)[-1],
                url=url,
                sha256=fields["SHA256"],
                size=size,
            )
        )
    if fetched:
        raise LockError(f"apt gave no SHA256 for: {', '.join(sorted(fetched))}")
    return sorted(packages, key=lambda package: package.name)
