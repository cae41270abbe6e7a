"""Who may reach a workspace, and the files that tell its sshd so.

The daemon is an SSH certificate authority. A workspace's sshd trusts the CA's key, lets in only
the principals listed for it (its owner; grants come next), and reads a revocation list at each
login. Certificates are short-lived (an hour by default) and name the person as key id and
principal, so a log line says who logged in.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from devenv.access.ssh_ca import SshCertificateAuthority
from devenv.daemon.events import EventLog
from devenv.daemon.tables import Workspace
from devenv.errors import Forbidden

SSH_DIR = "/etc/devenv/ssh"


class Access:
    def __init__(self, ca: SshCertificateAuthority, events: EventLog, *, certificate_ttl: float = 3600) -> None:
        self.ca = ca
        self.events = events
        self.certificate_ttl = certificate_ttl
        self._empty_krl: bytes | None = None
        self._lock = threading.Lock()

    def principals(self, ws: Workspace) -> list[str]:
        return [ws.owner]

    def workspace_files(self, ws: Workspace) -> dict[str, bytes]:
        """What a workspace's sshd reads: the CA key, who may log in, what is revoked."""
        with self._lock:
            if self._empty_krl is None:
                self._empty_krl = self.ca.ensure().revocation_list()
            krl = self._empty_krl
        return {
            f"{SSH_DIR}/ca.pub": (self.ca.public_key + "\n").encode(),
            f"{SSH_DIR}/principals": "".join(f"{name}\n" for name in self.principals(ws)).encode(),
            f"{SSH_DIR}/revoked.krl": krl,
        }

    def certificate(self, actor: str, ws: Workspace, public_key: str) -> dict[str, Any]:
        """A short-lived certificate for the caller's key, if the caller may reach the workspace."""
        if actor not in self.principals(ws):
            raise Forbidden(f"{actor} has no SSH access to workspace {ws.name}",
                            hint=f"its owner ({ws.owner}) can give it")
        serial = time.time_ns()  # unique and increasing: revocation lists name certificates by serial
        cert = self.ca.ensure().sign(public_key, key_id=actor, principals=[actor], serial=serial,
                                     valid_for=dt.timedelta(seconds=self.certificate_ttl))
        self.events.record(ws.name, "access", f"SSH certificate for {actor} (serial {serial}, valid until "
                                              f"{cert.valid_before:%Y-%m-%d %H:%M:%S} UTC)", actor=actor)
        return {"certificate": cert.text, "principal": actor, "serial": serial,
                "valid_before": cert.valid_before.timestamp(), "user": "dev", "host": "127.0.0.1",
                "port": ws.ssh_port}
