"""A call lab for the WebRTC tests: the censorship lab's topology
(deploy/lab/topology.py) with one probe host, the router and the internet,
under a prefix of this test session's own (`vwr...`), plus coturn (UDP, TCP,
TLS on 443) and the collector with its reference peer in the internet.

aioice never offers 127.0.0.1 as a candidate, so two peers on loopback cannot
call each other: the probe and the peer must sit on veth addresses, with the
router between them where the censor's nftables rules go (forward hook).

    probe ns 10.200.3.2 -- router (nft table vwr_webrtc) -- inet ns:
        192.88.99.80:80  collector + reference peer
        192.88.99.11     coturn 3478 udp/tcp, 443 tls
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.lab.addresses import SERVICES, probe_address
from deploy.services import Daemon, Listener
from deploy.services.coturn import Coturn
from probe.core.record import LinkType
from tests.conftest import BIN, in_ci
from tests.support.pki import TestCA

LINK = LinkType.WIFI
TABLE = "vwr_webrtc"
TURN_USER, TURN_PASSWORD = "vwr", "call-secret"
COLLECTOR_HOST, COLLECTOR_PORT = SERVICES["collector"], 80
RELAY_HOST = SERVICES["relay"]
TURN_TLS_PORT = 443  # TURN over TLS on 443: what censored users are told to try


def lab_problem() -> str | None:
    """Why the call lab cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    missing = [t for t in ("ip", "nft", "turnserver")
               if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        return f"missing {', '.join(missing)} (deploy/install-system-deps.sh)"
    return None


def require_lab() -> None:
    """A skip without root or the tools; a failure in CI, where `make test` installs them."""
    problem = lab_problem()
    if problem:
        if in_ci():
            pytest.fail(f"the WebRTC lab tests {problem}")
        pytest.skip(problem)


class CollectorDaemon(Daemon):
    """`voipwatch-collector serve` inside the internet namespace."""

    name = "collector"

    def __init__(self, directory: Path, settings: dict[str, Any], netns: str) -> None:
        super().__init__(directory, netns=netns, ready_timeout=60)
        self.settings = settings

    def write_config(self) -> None:
        lines = [f"{key} = {_toml(value)}" for key, value in self.settings.items()]
        (self.directory / "collector.toml").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [str(BIN / "voipwatch-collector"), "serve", "--config",
                str(self.directory / "collector.toml"), "--data-dir", str(self.directory),
                "--host", COLLECTOR_HOST, "--port", str(COLLECTOR_PORT)]

    def listeners(self) -> list[Listener]:
        return [Listener("tcp", COLLECTOR_HOST, COLLECTOR_PORT)]


def _toml(value: Any) -> str:
    """A TOML value (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


@dataclass
class CallLab:
    topology: Any
    workdir: Path
    ca: TestCA
    collector: CollectorDaemon

    @property
    def url(self) -> str:
        return f"http://{COLLECTOR_HOST}:{COLLECTOR_PORT}"

    @property
    def offer_url(self) -> str:
        return self.url + "/api/v1/webrtc/offer"

    @property
    def probe_ns(self) -> str:
        return str(self.topology.probe_ns(LINK))

    @property
    def probe_address(self) -> str:
        return probe_address(LINK)

    def probe_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPWATCH_")}
        env.update(VOIPWATCH_HOME=str(self.workdir / "probe-home"),
                   SSL_CERT_FILE=str(self.ca.path), NO_PROXY="*")
        return env

    def probe_argv(self, *args: str) -> list[str]:
        """`voipwatch-probe ARGS` on the probe host (`ip netns exec` execs it in place)."""
        return ["ip", "netns", "exec", self.probe_ns, str(BIN / "voipwatch-probe"), *args]

    def probe(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.probe_argv(*args), env=self.probe_env(), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def run_args(self, services: list[dict[str, Any]], timeout: float | None = 4,
                 name: str = "catalogue") -> list[str]:
        """The arguments of one probe pass over a catalogue of these services."""
        path = self.workdir / f"{name}.yaml"
        path.write_text(json.dumps({"version": 1, "services": services}))  # JSON is YAML
        return ["run", "--catalogue", str(path), "--collector", self.url, "--no-upload",
                "--json", "--link-type", "wifi",
                *(["--timeout", f"{timeout:g}"] if timeout else [])]

    def run_catalogue(self, services: list[dict[str, Any]], timeout: float | None = 4,
                      name: str = "catalogue") -> list[dict[str, Any]]:
        """One probe pass over a catalogue of these services; the signed records."""
        result = self.probe(*self.run_args(services, timeout, name))
        assert result.returncode == 0, f"probe run failed: {result.stderr[-3000:]}"
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def censor(self, *rules: str) -> None:
        """Replace the router's forward-hook rules (none: an open network)."""
        chain = "".join(f"    {rule}\n" for rule in rules)
        script = (f"table inet {TABLE} {{ }}\ndelete table inet {TABLE}\n"
                  f"table inet {TABLE} {{\n  chain forward {{\n"
                  f"    type filter hook forward priority filter; policy accept;\n"
                  f"{chain}  }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", self.topology.router_ns, "nft", "-f", "-"],
                       input=script, text=True, check=True, capture_output=True)

    def collector_events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.collector.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                found.append(entry)
        return found


def ice_servers(kind: str) -> list[dict[str, str]]:
    """The lab's ICE server variants, one TURN URL each (aiortc uses only one)."""
    credentials = {"username": TURN_USER, "credential": TURN_PASSWORD}
    return {
        "stun": [{"urls": f"stun:{RELAY_HOST}:3478"}],
        "turn-udp": [{"urls": f"turn:{RELAY_HOST}:3478?transport=udp", **credentials}],
        "turn-tcp": [{"urls": f"turn:{RELAY_HOST}:3478?transport=tcp", **credentials}],
        "turn-tls": [{"urls": f"turns:{RELAY_HOST}:{TURN_TLS_PORT}?transport=tcp",
                      **credentials}],
    }[kind]


@contextmanager
def call_lab(workdir: Path, tag: str, peer_settings: dict[str, Any] | None = None
             ) -> Iterator[CallLab]:
    """Namespaces, coturn, the collector and a registered probe; all removed on exit."""
    from deploy.lab.topology import Topology, reap_stale

    reap_stale()  # labs of crashed sessions (their owner process is gone)
    topology = Topology(f"vwr{tag}{os.getpid() % 100000}", (LINK,))
    topology.up(owner_pid=os.getpid())
    try:
        ca = TestCA(workdir)
        leaf = ca.issue(RELAY_HOST)
        # the peer's own ICE server: the lab's coturn, as a collector would use its own
        settings = {"webrtc_ice_servers": ice_servers("turn-udp"),
                    "webrtc_session_seconds": 30.0,
                    "webrtc_max_sessions": 8,
                    # a lab: its probes sit on RFC 1918 addresses, and it hands out no tokens
                    "webrtc_allow_private": True, "webrtc_sessions_per_key": 8,
                    "require_token": False, **(peer_settings or {})}
        with Coturn(workdir / "coturn", host=RELAY_HOST, port=3478, tls_port=TURN_TLS_PORT,
                    cert=leaf.cert_path, key=leaf.key_path, users={TURN_USER: TURN_PASSWORD},
                    realm="vwr", netns=topology.inet_ns), \
                CollectorDaemon(workdir / "collector", settings, topology.inet_ns) as collector:
            lab = CallLab(topology, workdir, ca, collector)
            # the lab's collector speaks plain http on a lab address: allowed on purpose
            registered = lab.probe("register", "--collector", lab.url, "--insecure")
            if registered.returncode != 0:
                raise RuntimeError(f"the probe could not register: {registered.stderr}")
            yield lab
    finally:
        topology.down()
