#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine with a Docker engine:
# debootstrap (the base image is made from Debian packages when no registry answers), a real
# registry for the registry tests (Debian's docker-registry), devenv with its test extras, and
# the CPU base image (so the first integration test does not pay for it). Also a real ssh client
# (SSH logins into workspaces), PostgreSQL's server (the daemon's team-server store) and Debian's
# chromium (JupyterLab through devenv's proxy, driven by Playwright without a browser download), and
# tmux (a real terminal for the TUI's end-to-end test), and libpq-dev (psycopg2 built from its sdist).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v git >/dev/null || missing+=(git)
command -v ssh >/dev/null || missing+=(openssh-client)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
[ -e /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)  # psycopg2 built from its sdist (test_sdist_packages)
command -v chromium >/dev/null || missing+=(chromium)
command -v tmux >/dev/null || missing+=(tmux)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/setup.sh: missing ${missing[*]}; run as root or install them first" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# uv resolves the test extras in seconds; pip's resolver has backtracked for over 10 minutes on them (aiobotocore)
python -m pip install --quiet --disable-pip-version-check uv
python -m uv pip install --quiet --python "$(python -c 'import sys; print(sys.executable)')" -e '.[test]'
# pyenv finds new console scripts only after a rehash (pip's shim does it, uv does not)
if command -v pyenv >/dev/null; then pyenv rehash; fi
# the base is made by the daemon this starts (in this user's DEVENV_HOME); stopped after, so the suite starts
# its own daemons on a quiet machine
python -m devenv images bootstrap --base cpu
python -m devenv daemon stop
