"""A lab: the topology, its working directory and its running services.

The working directory holds everything a lab makes: certificates, service
configs, logs, the collector's data and one VOIPWATCH_HOME per probe host.

    pki/  dns.json  tls.json  lab.json  collector/  probes/<link>/  logs/  run/
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.lab import DEFAULT_PREFIX, addresses, censor, mirror
from deploy.lab.dns import loaded_marker, write_config
from deploy.lab.mirror import Mirror
from deploy.lab.pki import LabCA
from deploy.lab.scenario import Scenario
from deploy.lab.shell import LabError, netns_exec, pid_alive
from deploy.lab.topology import Topology
from probe.core.record import LinkType

ROOT = Path(__file__).resolve().parents[2]
LAB_CATALOGUE = ROOT / "configs" / "lab-catalogue.yaml"
BIN = Path(sys.executable).parent
READY_TIMEOUT = 60.0


def default_workdir(prefix: str) -> Path:
    return ROOT / "var" / "lab" / prefix


@dataclass
class Lab:
    prefix: str = DEFAULT_PREFIX
    workdir: Path | None = None
    links: tuple[LinkType, ...] = tuple(addresses.LINKS)
    catalogue_path: Path = LAB_CATALOGUE
    # collector settings (extra `serve` arguments and environment), e.g. for replays
    collector_args: list[str] = field(default_factory=list)
    collector_env: dict[str, str] = field(default_factory=dict)
    with_collector: bool = True
    # a real catalogue to mirror inside the lab's internet (deploy/lab/mirror.py)
    mirror_catalogue: Path | None = None

    def __post_init__(self) -> None:
        self.topology = Topology(self.prefix, self.links)
        self.workdir = (self.workdir or default_workdir(self.prefix)).resolve()
        self._catalogue: Any = None
        self._mirror: Mirror | None = None
        if self.mirror_catalogue is not None:
            self.mirror_catalogue = self.mirror_catalogue.resolve()

    @classmethod
    def existing(cls, prefix: str, workdir: Path | None) -> Lab:
        """The lab `up` made with this prefix and working directory: its link
        types as it recorded them (the defaults when there is none)."""
        lab = cls(prefix, workdir)
        try:
            settings = json.loads((lab.dir / "lab.json").read_text())
        except (OSError, ValueError):
            return lab
        return cls(prefix, workdir, links=tuple(LinkType(x) for x in settings["links"]),
                   collector_args=settings.get("collector_args", []),
                   collector_env=settings.get("collector_env", {}),
                   with_collector=settings.get("collector", True),
                   mirror_catalogue=Path(settings["mirror"]) if settings.get("mirror") else None)

    @property
    def dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "lab-ca.pem"

    @property
    def catalogue(self) -> Any:
        if self._catalogue is None:
            from probe.catalogue import load_catalogue

            self._catalogue = load_catalogue(self.catalogue_path)
        return self._catalogue

    @property
    def mirror(self) -> Mirror | None:
        if self._mirror is None and self.mirror_catalogue is not None:
            self._mirror = mirror.load(self.mirror_catalogue)
        return self._mirror

    @property
    def zone(self) -> dict[str, str]:
        """Every name the lab's DNS answers: the lab's, and the mirror's."""
        return {**addresses.ZONE, **(self.mirror.zone if self.mirror else {})}

    # --- up and down --------------------------------------------------------------

    def up(self, owner_pid: int | None = None) -> None:
        """Build the namespaces, start the reference services, register the probes."""
        self.topology.up(owner_pid)
        try:
            if self.mirror:
                mirror.install(self.topology, self.mirror)
            self._write_configs()
            self._start_services()
            self.clear()
            if self.with_collector:
                for link in self.links:
                    self._register(link)
        except BaseException:
            self.down()
            raise

    def down(self) -> list[str]:
        return self.topology.down()

    def _write_configs(self) -> None:
        # a lab starts empty: no pids, measurements or probe keys of an earlier one
        for stale in ("run", "collector", "probes"):
            shutil.rmtree(self.dir / stale, ignore_errors=True)
        for sub in ("logs", "run", "probes", "collector"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        ca = LabCA(self.dir / "pki")
        chat, msg = ca.issue("chat.lumen.lab"), ca.issue("msg.parla.lab")
        impostor = ca.issue("impostor.lab")
        # the mirror sends STUN/TURN over TLS to lumen's relay and SIP over TLS to
        # Kamailio: their certificates must pass for the mirrored hosts too
        mirrored = self.mirror.cert_names() if self.mirror else []
        ca.issue("relay.lumen.lab", *mirrored)
        ca.issue("stun.parla.lab")
        ca.issue("sip.parla.lab", *mirrored)
        listen = [
            {"address": addresses.SERVICES["echo"], "port": 7, "proto": "udp-echo"},
            {"address": addresses.SERVICES["chat"], "port": 5222},
            {"address": addresses.SERVICES["chat"], "port": 443, "cert": str(chat.cert),
             "key": str(chat.key)},
            {"address": addresses.SERVICES["msg"], "port": 443, "cert": str(msg.cert),
             "key": str(msg.key)},
            {"address": addresses.SERVICES["impostor"], "port": 443, "cert": str(impostor.cert),
             "key": str(impostor.key)},
        ]
        if self.mirror:
            listen += self.mirror.tls_listeners(
                ca.issue(*self.mirror.cert_names(), label="mirror.lab"))
        (self.dir / "tls.json").write_text(json.dumps({"listen": listen}, indent=1))
        self.set_dns_views({})
        (self.dir / "lab.json").write_text(json.dumps({
            "prefix": self.prefix, "links": [str(link) for link in self.links],
            "collector": self.with_collector, "collector_args": self.collector_args,
            "collector_env": self.collector_env,
            "mirror": str(self.mirror_catalogue) if self.mirror_catalogue else None,
        }, indent=1))

    def _start_services(self) -> None:
        run = self.dir / "run"
        log = (self.dir / "logs" / "services.log").open("ab")
        argv = netns_exec(self.topology.inet_ns,
                          [sys.executable, "-m", "deploy.lab.services", str(self.dir)])
        # its own session: the supervisor outlives `python -m deploy.lab up`
        process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   cwd=ROOT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while not (run / "ready").exists():
            if (run / "failed").exists() or process.poll() is not None:
                reason = (run / "failed").read_text() if (run / "failed").exists() else \
                    f"exited with status {process.poll()}"
                raise LabError(f"the lab's services did not start: {reason}")
            if time.monotonic() > deadline:
                raise LabError(f"the lab's services were not ready within {READY_TIMEOUT:g} s "
                               f"(see {self.dir / 'logs'})")
            time.sleep(0.05)

    def services(self) -> dict[str, int | None]:
        try:
            return json.loads((self.dir / "run" / "services.json").read_text())
        except (OSError, ValueError):
            return {}

    # --- policies -----------------------------------------------------------------

    def set_dns_views(self, views: dict[str, dict[str, Any]]) -> None:
        """Give the lying resolver these views, and wait until it has them."""
        generation = time.monotonic_ns()
        listen = [{"address": addresses.SERVICES["ns"], "port": 53, "role": "authoritative"},
                  {"address": addresses.SERVICES["liar"], "port": 53, "role": "liar"}]
        path = self.dir / "dns.json"
        write_config(path, self.zone, listen, views, generation)
        pid = self.services().get("dns")
        if not pid:
            return  # not started yet: it reads the file at start
        os.kill(pid, signal.SIGHUP)
        marker = loaded_marker(path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if int(marker.read_text()) == generation:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        raise LabError("the lab's DNS server did not take the new scenario's answers "
                       f"(see {self.dir / 'logs' / 'dns.log'})")

    def apply(self, scenario: Scenario) -> None:
        compiled = censor.Compiler(self.catalogue).compile(scenario, self.topology)
        censor.install(self.topology, compiled)
        self.set_dns_views(compiled.dns_views)
        (self.dir / "run" / "scenario").write_text(scenario.name)

    def clear(self) -> None:
        censor.clear(self.topology)
        self.set_dns_views({})
        (self.dir / "run" / "scenario").write_text("none")

    # --- probes -------------------------------------------------------------------

    def probe_home(self, link: LinkType) -> Path:
        return self.dir / "probes" / str(link)

    def probe_env(self, link: LinkType, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("VOIPWATCH_")}
        env.update(VOIPWATCH_HOME=str(self.probe_home(link)), SSL_CERT_FILE=str(self.ca_file),
                   NO_PROXY="*")
        env.update(extra or {})
        return env

    def probe_argv(self, link: LinkType, *args: str) -> list[str]:
        return netns_exec(self.topology.probe_ns(link), [str(BIN / "voipwatch-probe"), *args])

    def _register(self, link: LinkType) -> None:
        result = subprocess.run(
            # the lab's collector speaks plain http on its lab address: allowed on purpose
            self.probe_argv(link, "register", "--collector", addresses.collector_url(),
                            "--insecure"),
            env=self.probe_env(link), capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise LabError(f"the {link} probe could not register with the lab's collector: "
                           f"{(result.stderr or result.stdout).strip()[-300:]}")

    def run_argv(self, link: LinkType, *, timeout: float | None = None, upload: bool = False,
                 catalogue: Path | None = None, skip: tuple[str, ...] = (),
                 services: tuple[str, ...] = ()) -> list[str]:
        url = addresses.collector_url()
        args = ["run", "--catalogue", str(catalogue or self.catalogue_path),
                "--resolver", addresses.resolver(), "--link-type", str(link), "--json",
                "--control", url, "--collector", url, "--insecure"]
        if not upload:
            args.append("--no-upload")
        if skip:
            args += ["--skip", ",".join(skip)]
        if services:
            args += ["--services", ",".join(services)]
        if timeout:
            args += ["--timeout", f"{timeout:g}"]
        return self.probe_argv(link, *args)

    def _scenario(self) -> str | None:
        try:
            return (self.dir / "run" / "scenario").read_text()
        except OSError:
            return None

    def status(self) -> dict[str, Any]:
        services = {name: bool(pid and pid_alive(pid)) for name, pid in self.services().items()}
        return {"prefix": self.prefix, "up": self.topology.is_up(),
                "namespaces": self.topology.existing(), "workdir": str(self.dir),
                "services": services, "scenario": self._scenario(),
                "collector": addresses.collector_url(),
                "resolver": addresses.resolver(),
                "mirror": str(self.mirror_catalogue) if self.mirror_catalogue else None}
