"""Kamailio (Debian `kamailio` + `kamailio-tls-modules`, 5.6) as a minimal SIP
server: it answers OPTIONS with 200 OK and any other request with 405,
statelessly, on UDP and TCP (`port`) and on TLS (`tls_port`) when a
certificate is given. It runs in the foreground (-DD -E) with its runtime
directory, pid file and configuration in the launcher's directory.
"""

from __future__ import annotations

import glob
from pathlib import Path

from deploy.services import READY_TIMEOUT, Daemon, Listener, ServiceError, free_port

__all__ = ["Kamailio"]

_MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/*/kamailio/modules",
                "/usr/lib/kamailio/modules", "/usr/local/lib*/kamailio/modules")

ROUTES = """\
request_route {
    if (method == "ACK") {
        exit;
    }
    if (method == "OPTIONS") {
        sl_send_reply("200", "OK");
        exit;
    }
    sl_send_reply("405", "Method Not Allowed");
}
"""


def module_dir() -> str:
    for pattern in _MODULE_DIRS:
        for path in sorted(glob.glob(pattern)):
            if Path(path, "sl.so").exists():
                return path
    raise ServiceError("Kamailio modules not found (install the kamailio package)")


def _listen_address(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Kamailio(Daemon):
    name = "kamailio"
    forks_workers = True  # it loads its TLS files after binding, before forking

    def __init__(self, directory: Path | str, *, host: str = "127.0.0.1",
                 port: int | None = None, tls_port: int | None = None,
                 cert: Path | str | None = None, key: Path | str | None = None,
                 children: int = 1, netns: str | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        super().__init__(directory, netns=netns, ready_timeout=ready_timeout)
        if (cert is None) != (key is None):
            raise ServiceError("kamailio: give both cert and key for TLS, or neither")
        self.host = host
        self.port = port or (5060 if netns else free_port(host))
        self.cert, self.key = (Path(cert), Path(key)) if cert and key else (None, None)
        self.tls_port = None
        if self.cert:
            self.tls_port = tls_port or (5061 if netns else free_port(host))
        self.children = children

    @property
    def config_path(self) -> Path:
        return self.directory / "kamailio.cfg"

    def write_config(self) -> None:
        address = _listen_address(self.host)
        lines = [
            "#!KAMAILIO",
            "debug=2",
            "log_stderror=yes",
            f"children={self.children}",
            f"tcp_children={self.children}",
            "auto_aliases=no",
            f"listen=udp:{address}:{self.port}",
            f"listen=tcp:{address}:{self.port}",
            f'mpath="{module_dir()}/"',
            'loadmodule "sl.so"',
        ]
        if self.cert and self.key:
            tls_cfg = self.directory / "tls.cfg"
            tls_cfg.write_text(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
                f"require_certificate = no\ncertificate = {self.cert}\n"
                f"private_key = {self.key}\n\n"
                "[client:default]\nverify_certificate = no\nrequire_certificate = no\n")
            lines += ["enable_tls=yes", f"listen=tls:{address}:{self.tls_port}",
                      'loadmodule "tls.so"', f'modparam("tls", "config", "{tls_cfg}")']
        self.config_path.write_text("\n".join(lines) + "\n\n" + ROUTES)

    def command(self) -> list[str]:
        runtime = self.directory / "run"
        runtime.mkdir(exist_ok=True)
        return ["kamailio", "-f", str(self.config_path), "-DD", "-E", "-Y", str(runtime),
                "-P", str(self.directory / "kamailio.pid"), "-m", "32", "-M", "4"]

    def listeners(self) -> list[Listener]:
        found = [Listener("udp", self.host, self.port), Listener("tcp", self.host, self.port)]
        if self.tls_port:
            found.append(Listener("tcp", self.host, self.tls_port))
        return found
