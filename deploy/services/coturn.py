"""coturn (Debian `coturn`, 4.6) as a STUN/TURN server: UDP and TCP on `port`,
TLS on `tls_port` when a certificate is given, long-term credentials.

Ports left as None are picked free on `host` (outside a namespace), or are the
standard 3478/5349 inside one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.services import READY_TIMEOUT, Daemon, Listener, ServiceError, free_port

__all__ = ["Coturn"]


class Coturn(Daemon):
    name = "turnserver"

    def __init__(self, directory: Path | str, *, host: str = "127.0.0.1",
                 port: int | None = None, tls_port: int | None = None,
                 cert: Path | str | None = None, key: Path | str | None = None,
                 users: Mapping[str, str] | None = None, realm: str = "voipwatch.test",
                 relay_host: str | None = None, relay_ports: tuple[int, int] | None = None,
                 allow_loopback_peers: bool = False, fingerprint: bool = True,
                 dtls: bool = False, extra: Sequence[str] = (), netns: str | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        super().__init__(directory, netns=netns, ready_timeout=ready_timeout)
        if (cert is None) != (key is None):
            raise ServiceError("coturn: give both cert and key for TLS, or neither")
        self.host = host
        self.port = port or (3478 if netns else free_port(host))
        self.cert, self.key = (Path(cert), Path(key)) if cert and key else (None, None)
        self.tls_port = None
        if self.cert:
            self.tls_port = tls_port or (5349 if netns else free_port(host))
        self.users = dict(users if users is not None else {"u": "p"})
        self.realm = realm
        self.relay_host = relay_host or host
        self.relay_ports = relay_ports
        self.allow_loopback_peers = allow_loopback_peers
        self.fingerprint = fingerprint
        self.dtls = dtls
        self.extra = list(extra)

    @property
    def config_path(self) -> Path:
        return self.directory / "turnserver.conf"

    def write_config(self) -> None:
        lines = [
            f"listening-ip={self.host}",
            f"relay-ip={self.relay_host}",
            f"listening-port={self.port}",
            "lt-cred-mech",
            f"realm={self.realm}",
            *(f"user={name}:{password}" for name, password in self.users.items()),
            f"userdb={self.directory / 'turndb'}",
            f"pidfile={self.directory / 'turnserver.pid'}",
            "log-file=stdout",  # into our log file, with the launcher's stdout
            "simple-log",
            "no-cli",  # else a telnet CLI on port 5766, shared by every instance
        ]
        if self.fingerprint:
            lines.append("fingerprint")
        if self.cert and self.key:
            lines += [f"tls-listening-port={self.tls_port}", f"cert={self.cert}",
                      f"pkey={self.key}"]
        else:
            lines.append("no-tls")
        if not self.dtls:
            lines.append("no-dtls")
        if self.allow_loopback_peers:
            lines.append("allow-loopback-peers")
        if self.relay_ports:
            lines += [f"min-port={self.relay_ports[0]}", f"max-port={self.relay_ports[1]}"]
        lines += self.extra
        self.config_path.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return ["turnserver", "-c", str(self.config_path)]

    def listeners(self) -> list[Listener]:
        found = [Listener("udp", self.host, self.port), Listener("tcp", self.host, self.port)]
        if self.tls_port:
            found.append(Listener("tcp", self.host, self.tls_port))
            if self.dtls:
                found.append(Listener("udp", self.host, self.tls_port))
        return found
