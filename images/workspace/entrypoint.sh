#!/bin/bash
# devenv workspace entrypoint, run under tini as PID 1's child.
# With a command: run it (one-shot `devenv run`). Without: prepare sshd's per-container host keys
# and serve sshd in the foreground (the daemon adds JupyterLab supervision).
set -euo pipefail
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
