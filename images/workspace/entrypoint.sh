#!/bin/bash
# devenv workspace entrypoint, run by tini (PID 1), which forwards SIGTERM/SIGINT to it.
# With a command: run it (one-shot `devenv run`). Without: supervise the workspace's services,
# sshd (DEVENV_SSH, default 1) and JupyterLab (DEVENV_JUPYTER, default 1, when installed), each
# restarted after 1 s if it dies, until SIGTERM/SIGINT, which is forwarded so `docker stop` is quick.
#
# Each service has its own supervising subshell that waits on its one process: bash's `wait -n`
# misses children that exited before it was called, `wait PID` never does.
set -uo pipefail
if [ "$#" -gt 0 ]; then
    exec "$@"
fi

readonly JUPYTER=/opt/devenv/venv/bin/jupyter
readonly TOKEN_DIR=/run/devenv
readonly TOKEN_FILE=/run/devenv/jupyter-token
readonly STOP_GRACE=5   # seconds services get to exit cleanly after a stop signal (docker's default is 10)

log() { printf 'devenv-entrypoint: %s\n' "$*" >&2; }

# supervise NAME COMMAND...: run COMMAND, restart it 1 s after it exits, stop it on SIGTERM.
supervise() {
    local name=$1
    shift
    local stop=0 child="" status
    trap 'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM
    while [ "$stop" = 0 ]; do
        "$@" &
        child=$!
        [ "$stop" = 1 ] && kill -TERM "$child" 2>/dev/null   # the signal came before $child was set
        wait "$child"
        status=$?
        if [ "$stop" = 1 ]; then
            wait "$child"   # interrupted by the trap: now wait for the service to actually exit
            break
        fi
        log "$name exited with status $status; restarting in 1 s"
        sleep 1 &
        wait "$!"
    done
}

# sshd (with UsePAM no) refuses every key of a locked account, and useradd creates `dev` locked
# ("!"); "*" keeps password login impossible without locking the account.
unlock_dev() {
    local hash
    hash=$(getent shadow dev | cut -d: -f2)
    if [ "${hash:0:1}" = "!" ]; then
        usermod --password '*' dev
    fi
}

# JupyterLab's internal secret: the one devenv's daemon placed (its proxy sends it; root's alone, in a
# 0700 folder), else a new one (a plain `docker run`). JupyterLab reads it from a file that only root
# and the owner's group (devenv-owner: JupyterLab itself, the owner's SSH logins and execs) can read:
# never dev's own file (a grantee runs as dev too), never in an environment (/proc/PID/environ), on
# a command line (ps), in a label (docker inspect) or in a log.
readonly PLACED_SECRET=/etc/devenv/jupyter/secret
readonly OWNER_GROUP=devenv-owner
readonly RUNTIME_DIR=/run/devenv/jupyter-runtime
new_jupyter_token() {
    local token
    if [ -s "$PLACED_SECRET" ]; then
        token=$(tr -d ' \n' <"$PLACED_SECRET")
    else
        token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    fi
    install -d --mode 0755 --owner root --group root "$TOKEN_DIR"
    (umask 077 && printf '%s\n' "$token" >"$TOKEN_FILE.new")
    chown "root:$OWNER_GROUP" "$TOKEN_FILE.new"
    chmod 0640 "$TOKEN_FILE.new"
    mv -f "$TOKEN_FILE.new" "$TOKEN_FILE"
    # kernels' connection files (their signing keys) and the server's own files: the owner's group only
    install -d --mode 2770 --owner root --group "$OWNER_GROUP" "$RUNTIME_DIR"
}

# As dev via setpriv, which execs: runuser would stay as a parent that, on SIGTERM, sleeps 2 s and
# SIGKILLs JupyterLab ("Session terminated, killing shell..."), so kernels would not be shut down.
# --init-groups gives it devenv-owner (dev is a member); a grantee's login and execs never get it.
run_jupyter() {
    cd /home/dev || return 1
    exec env -u JUPYTER_TOKEN HOME=/home/dev USER=dev LOGNAME=dev SHELL=/bin/bash \
        JUPYTER_CONFIG_PATH=/opt/devenv/etc/jupyter DEVENV_JUPYTER_TOKEN_FILE="$TOKEN_FILE" \
        JUPYTER_RUNTIME_DIR="$RUNTIME_DIR" \
        setpriv --reuid=dev --regid=dev --init-groups -- \
        "$JUPYTER" lab --no-browser --ip=0.0.0.0 --port="${DEVENV_JUPYTER_PORT:-8888}" --ServerApp.root_dir=/home/dev \
        --ServerApp.base_url="/jupyter/${DEVENV_WORKSPACE:-workspace}/"
}

supervisors=()
stopping=0
on_stop() {
    [ "$stopping" = 1 ] && return
    stopping=1
    ((${#supervisors[@]})) && kill -TERM "${supervisors[@]}" 2>/dev/null
    (sleep "$STOP_GRACE" && log "services still running after ${STOP_GRACE} s; killing them" && kill -KILL $$) &
}
trap on_stop TERM INT

# The daemon's files hold JupyterLab's secret (root's alone) and the grantees' logins, which become
# passwd and group entries before sshd starts (and again whenever the daemon changes a grant).
install -d --mode 0700 --owner root --group root /etc/devenv/jupyter
/usr/bin/python3 -I /opt/devenv/bin/end-sessions --sync || log "could not write the grantees' logins"
if [ "${DEVENV_SSH:-1}" = 1 ]; then
    unlock_dev
    mkdir -p /run/sshd
    install -d --mode 0755 /run/devenv && (umask 077 && : >/run/devenv/ssh-logins)
    # devenv places a host key with a certificate from its host CA before each start: clients that
    # trust the CA accept this workspace by name, across rebuilds, without a first-use prompt
    # (then sshd needs no other host key, and the start skips making three: a second of CPU)
    host_key=()
    if [ -s /etc/devenv/ssh/host_ed25519_key ] && [ -s /etc/devenv/ssh/host_ed25519_key-cert.pub ]; then
        chmod 0600 /etc/devenv/ssh/host_ed25519_key
        host_key=(-o HostKey=/etc/devenv/ssh/host_ed25519_key
                  -o HostCertificate=/etc/devenv/ssh/host_ed25519_key-cert.pub)
    else
        ssh-keygen -A >/dev/null
    fi
    supervise sshd /usr/sbin/sshd -D -e "${host_key[@]}" &
    supervisors+=("$!")
fi
if [ "${DEVENV_JUPYTER:-1}" = 1 ]; then
    if [ -x "$JUPYTER" ]; then
        new_jupyter_token
        supervise jupyter run_jupyter &
        supervisors+=("$!")
    else
        log "JupyterLab is not installed in this image; not starting it"
    fi
fi
if [ "${#supervisors[@]}" = 0 ]; then
    log "no service enabled; idling so the workspace stays up for exec"
    supervise idle sleep infinity &
    supervisors+=("$!")
fi

# Live as long as a supervisor does (they only return once stopping). `wait` returns early when a
# trapped signal arrives, so each one is waited for again until it has really gone.
for pid in "${supervisors[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
        wait "$pid"
    done
done
exit 0
