# devenv: what a workspace's shells and Jupyter kernels know about it. Sourced (POSIX sh) by login
# shells (/etc/profile.d/devenv.sh), interactive bash (/etc/bash.bashrc) and the Python kernel
# wrapper (/opt/devenv/bin/python-kernel), so a secret set before a start reaches all three.
#
# Secrets come from a tmpfs the daemon fills at each start: never an image layer, a label or the
# container's environment (`docker inspect`). workspace.env holds the pins (image, lock, data) and
# the W&B project; the daemon rewrites it at each start and after each `devenv data pull`.
if [ -r /run/devenv/secrets/env ]; then . /run/devenv/secrets/env; fi
if [ -r /etc/devenv/workspace.env ]; then . /etc/devenv/workspace.env; fi

# W&B: every run carries what pins it, as tags and as config (WANDB_TAGS, WANDB_CONFIG_PATHS). The
# commit is read here, so a new shell or kernel after a commit tags runs with the new one.
if [ -n "${WANDB_PROJECT:-}" ]; then
    DEVENV_GIT_COMMIT=""
    if [ -n "${DEVENV_REPO_DIR:-}" ] && [ -d "$DEVENV_REPO_DIR/.git" ]; then
        DEVENV_GIT_COMMIT=$(git -C "$DEVENV_REPO_DIR" rev-parse HEAD 2>/dev/null || true)
    fi
    export DEVENV_GIT_COMMIT
    _devenv_dir="${TMPDIR:-/tmp}/devenv-wandb-$(id -u)"
    _devenv_config="$_devenv_dir/config-${DEVENV_GIT_COMMIT:-none}-${DEVENV_DATA_HASH:-none}.yaml"
    if [ ! -s "$_devenv_config" ] && mkdir -p "$_devenv_dir" 2>/dev/null; then
        chmod 0700 "$_devenv_dir"
        {
            printf 'devenv:\n  value:\n'
            printf '    workspace: "%s"\n' "${DEVENV_WORKSPACE:-}"
            printf '    image_hash: "%s"\n' "${DEVENV_IMAGE_HASH:-}"
            printf '    lock_hash: "%s"\n' "${DEVENV_LOCK_HASH:-}"
            printf '    base_digest: "%s"\n' "${DEVENV_BASE_DIGEST:-}"
            printf '    git_commit: "%s"\n' "$DEVENV_GIT_COMMIT"
            printf '    data_hash: "%s"\n' "${DEVENV_DATA_HASH:-}"
        } >"$_devenv_config.$$" && mv -f "$_devenv_config.$$" "$_devenv_config"
    fi
    if [ -s "$_devenv_config" ]; then export WANDB_CONFIG_PATHS="$_devenv_config"; fi
    _devenv_short() { printf '%.12s' "$1"; }
    WANDB_TAGS="devenv,workspace:${DEVENV_WORKSPACE:-}"
    WANDB_TAGS="$WANDB_TAGS,image:$(_devenv_short "${DEVENV_IMAGE_HASH:-}"),lock:$(_devenv_short "${DEVENV_LOCK_HASH:-}")"
    if [ -n "$DEVENV_GIT_COMMIT" ]; then WANDB_TAGS="$WANDB_TAGS,commit:$(_devenv_short "$DEVENV_GIT_COMMIT")"; fi
    if [ -n "${DEVENV_DATA_HASH:-}" ]; then WANDB_TAGS="$WANDB_TAGS,data:$(_devenv_short "$DEVENV_DATA_HASH")"; fi
    export WANDB_TAGS
    unset -f _devenv_short
    unset _devenv_dir _devenv_config
fi
