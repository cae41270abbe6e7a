# devenv: what a workspace's shells and Jupyter kernels know about it. Sourced (POSIX sh) by login
# shells (/etc/profile.d/devenv.sh), interactive bash (/etc/bash.bashrc) and the Python kernel
# wrapper (/opt/devenv/bin/python-kernel), so a secret set before a start reaches all three.
#
# Secrets come from a tmpfs the daemon fills at each start: never an image layer, a label or the
# container's environment (`docker inspect`). workspace.env holds the pins (image, lock, data) and
# the W&B project; the daemon rewrites it at each start and after each `devenv data pull`. (W&B
# runs get the pins as tags and config from devenv_wandb.py, which the project's venv loads.)
if [ -r /run/devenv/secrets/env ]; then . /run/devenv/secrets/env; fi
if [ -r /etc/devenv/workspace.env ]; then . /etc/devenv/workspace.env; fi
# The owner's JupyterLab keeps its kernels' connection files where only the owner's processes may look
# (`jupyter server list`, `jupyter console --existing`); a kernel keeps the runtime folder it was given.
if [ -z "${JUPYTER_RUNTIME_DIR:-}" ] && [ -x /run/devenv/jupyter-runtime ]; then
    export JUPYTER_RUNTIME_DIR=/run/devenv/jupyter-runtime
fi
