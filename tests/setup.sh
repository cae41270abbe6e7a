#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine with a Docker engine:
# debootstrap (the base image is made from Debian packages when no registry answers), devenv with
# its test extras, and the CPU base image (so the first integration test does not pay for it).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/setup.sh: debootstrap is missing; run as root or install it first" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
python -m pip install --quiet --disable-pip-version-check -e '.[test]'
devenv images bootstrap --base cpu
