"""Build and tear down the lab's network namespaces.

    PREFIX-cell --cellular--+
    PREFIX-adsl --adsl------+-- PREFIX-router --inet-- PREFIX-inet (reference services)
    PREFIX-wifi --wifi------+

The router's interface toward each probe host is named after its link type,
so a censor rule selects a link type with `iifname "cellular"`. Every name
starts with the prefix, and `down` works from the names alone (plus
`ip netns pids`), so it cleans up completely even after a crash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from deploy.lab import DEFAULT_PREFIX
from deploy.lab.addresses import (
    INET_TRANSIT,
    LAB_NETWORK,
    LINKS,
    ROUTER_TRANSIT,
    SERVICES,
    SHORT,
    TRANSIT_PREFIX,
    probe_address,
    resolver,
    router_address,
)
from deploy.lab.shell import (
    UsageError,
    kill_namespace_processes,
    namespaces,
    pid_alive,
    require_root,
    require_tools,
    run,
)
from probe.core.record import LinkType

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,11}$")
ROLES = ("router", "inet", *SHORT.values())
NETNS_ETC = Path("/etc/netns")
OWNERS = Path("/run/voipwatch-lab")


def check_prefix(prefix: str) -> str:
    if not PREFIX_PATTERN.match(prefix):
        raise UsageError(f"lab prefix {prefix!r}: expected 2-12 lower-case letters and digits, "
                       "starting with a letter (e.g. vwlab or vwlab2)")
    return prefix


@dataclass(frozen=True)
class Topology:
    prefix: str = DEFAULT_PREFIX
    links: tuple[LinkType, ...] = field(default_factory=lambda: tuple(LINKS))

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def probe_ns(self, link: LinkType) -> str:
        return f"{self.prefix}-{SHORT[link]}"

    @property
    def router_ns(self) -> str:
        return f"{self.prefix}-router"

    @property
    def inet_ns(self) -> str:
        return f"{self.prefix}-inet"

    def namespaces(self) -> list[str]:
        return [self.router_ns, self.inet_ns, *(self.probe_ns(link) for link in self.links)]

    def existing(self) -> list[str]:
        """Our namespaces that exist now (any link type, whatever `links` says)."""
        ours = {f"{self.prefix}-{role}" for role in ROLES}
        return [name for name in namespaces() if name in ours]

    def is_up(self) -> bool:
        return set(self.namespaces()) <= set(namespaces())

    # --- building ---------------------------------------------------------------

    def up(self, owner_pid: int | None = None) -> None:
        """Build the topology from scratch (an existing lab of this prefix goes first).

        `owner_pid`: the process the lab belongs to; when it has died, `reap_stale`
        may remove the lab (tests use this). None: a lab kept until `down`."""
        require_root("the censorship lab")
        require_tools("ip", "nft", "tc")
        self.down()
        self._write_owner(owner_pid)
        try:
            for name in self.namespaces():
                run(["ip", "netns", "add", name])
                run(["ip", "-n", name, "link", "set", "lo", "up"])
            self._router()
            self._internet()
            for link in self.links:
                self._probe_host(link)
        except BaseException:
            self.down()
            raise

    def _router(self) -> None:
        router, inet = self.router_ns, self.inet_ns
        run(["ip", "link", "add", "name", "inet", "netns", router, "type", "veth",
             "peer", "name", "eth0", "netns", inet])
        run(["ip", "-n", router, "addr", "add", f"{ROUTER_TRANSIT}/{TRANSIT_PREFIX}",
             "dev", "inet"])
        run(["ip", "-n", router, "link", "set", "inet", "up"])
        run(["ip", "-n", router, "route", "add", "default", "via", INET_TRANSIT])
        # icmp_ratelimit=0: a scenario's `reject` answers every packet it matches;
        # the kernel's default limit (one ICMP error per second per destination)
        # would turn some rejects into silent drops when many checks start at once
        for setting in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                        "net.ipv6.conf.all.disable_ipv6=1", "net.ipv4.icmp_ratelimit=0"):
            run(["sysctl", "-q", "-w", setting], namespace=router)

    def _internet(self) -> None:
        inet = self.inet_ns
        run(["ip", "-n", inet, "addr", "add", f"{INET_TRANSIT}/{TRANSIT_PREFIX}", "dev", "eth0"])
        run(["ip", "-n", inet, "link", "set", "eth0", "up"])
        run(["ip", "-n", inet, "route", "add", LAB_NETWORK, "via", ROUTER_TRANSIT])
        for address in SERVICES.values():
            run(["ip", "-n", inet, "addr", "add", f"{address}/32", "dev", "lo"])
        # the far end routes nothing: a packet for an address it does not hold (a
        # bogon a censor's resolver gave) goes nowhere. A new namespace inherits the
        # host's IPv4 forwarding; with it on, such packets got ICMP net-unreachable
        run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv4.ip_forward=0"], namespace=inet)
        self._resolv_conf(inet)

    def _probe_host(self, link: LinkType) -> None:
        host, router, name = self.probe_ns(link), self.router_ns, str(link)
        run(["ip", "link", "add", "name", name, "netns", router, "type", "veth",
             "peer", "name", "eth0", "netns", host])
        run(["ip", "-n", router, "addr", "add", f"{router_address(link)}/24", "dev", name])
        run(["ip", "-n", router, "link", "set", name, "up"])
        run(["ip", "-n", host, "addr", "add", f"{probe_address(link)}/24", "dev", "eth0"])
        run(["ip", "-n", host, "link", "set", "eth0", "up"])
        run(["ip", "-n", host, "route", "add", "default", "via", router_address(link)])
        # IPv6 off: the probe must not wander to addresses the lab does not route
        run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], namespace=host)
        self._resolv_conf(host)

    def _resolv_conf(self, namespace: str) -> None:
        directory = NETNS_ETC / namespace
        directory.mkdir(parents=True, exist_ok=True)
        # glibc retries a lost query after 5 s by default: under the loss scenarios a
        # name aioice looks up (a webrtc endpoint's ICE servers) would then miss its 5 s
        # gathering window; 1 s keeps the retransmissions inside it
        (directory / "resolv.conf").write_text(
            f"# voipwatch lab {self.prefix}: the lab's authoritative server\n"
            f"nameserver {resolver()}\noptions timeout:1 attempts:4\n")

    def _write_owner(self, pid: int | None) -> None:
        OWNERS.mkdir(parents=True, exist_ok=True)
        (OWNERS / f"{self.prefix}.json").write_text(json.dumps({"owner_pid": pid}))

    # --- tearing down -----------------------------------------------------------

    def down(self) -> list[str]:
        """Remove everything this prefix owns; safe to call any number of times."""
        removed = []
        for name in self.existing():
            kill_namespace_processes(name)
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
        for role in ROLES:
            shutil.rmtree(NETNS_ETC / f"{self.prefix}-{role}", ignore_errors=True)
        (OWNERS / f"{self.prefix}.json").unlink(missing_ok=True)
        return removed


def lab_prefixes() -> list[str]:
    """Prefixes of every lab whose namespaces exist on this machine."""
    found = set()
    for name in namespaces():
        prefix, _, role = name.rpartition("-")
        if role in ROLES and PREFIX_PATTERN.match(prefix) and prefix.startswith("vw"):
            found.add(prefix)
    return sorted(found)


def reap_stale() -> list[str]:
    """Remove labs whose owning process has died (a crashed test session)."""
    reaped = []
    for prefix in lab_prefixes():
        try:
            owner = json.loads((OWNERS / f"{prefix}.json").read_text()).get("owner_pid")
        except (OSError, ValueError):
            continue  # no owner recorded: a lab someone keeps on purpose
        if isinstance(owner, int) and owner != os.getpid() and not pid_alive(owner):
            Topology(prefix).down()
            reaped.append(prefix)
    return reaped
