"""Docker engines on other machines, reached over SSH with paramiko.

`session` holds one verified SSH connection per host (host keys pinned in known_hosts, never
accepted silently); `docker_transport` carries the Docker SDK's calls over it (the SDK's own
`docker system dial-stdio` channels); `tunnels` carries connections to a workspace's sshd or
JupyterLab through it, so the daemon reaches a container on the host's bridge as if it were local.
"""
