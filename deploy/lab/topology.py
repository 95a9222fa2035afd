"""Build and tear down the lab's network namespaces.

    PREFIX-cell -- PREFIX-acell --cellular--+
    PREFIX-adsl -- PREFIX-aadsl --adsl------+-- PREFIX-router -- PREFIX-core -- PREFIX-inet
    PREFIX-wifi -- PREFIX-awifi --wifi------+    (censor)                      (services)

A chain of routers, so that the censor sits at a known hop (2) of the path a
TTL-limited probe walks: the link's access router (hop 1), the censoring
router (2), a core router (3), the internet (4; addresses.HOPS). The
router's interface toward each link's access router is named after the link
type, so a censor rule selects a link type with `iifname "cellular"`. Every name
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
    ACCESS_NETWORK,
    CORE_DOWN,
    CORE_UP,
    INET_TRANSIT,
    LAB_NETWORK,
    LINKS,
    ROUTER_TRANSIT,
    SERVICES,
    SHORT,
    TRANSIT_PREFIX,
    access_uplink,
    link_subnet,
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
ROLES = ("router", "core", "inet", *SHORT.values(), *(f"a{short}" for short in SHORT.values()))
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

    def access_ns(self, link: LinkType) -> str:
        return f"{self.prefix}-a{SHORT[link]}"

    @property
    def core_ns(self) -> str:
        return f"{self.prefix}-core"

    @property
    def router_ns(self) -> str:
        return f"{self.prefix}-router"

    @property
    def inet_ns(self) -> str:
        return f"{self.prefix}-inet"

    def namespaces(self) -> list[str]:
        return [self.router_ns, self.core_ns, self.inet_ns,
                *(self.access_ns(link) for link in self.links),
                *(self.probe_ns(link) for link in self.links)]

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
        router, core, inet = self.router_ns, self.core_ns, self.inet_ns
        self._veth(router, "inet", f"{ROUTER_TRANSIT}/{TRANSIT_PREFIX}",
                   core, "south", f"{CORE_DOWN}/{TRANSIT_PREFIX}")
        self._veth(core, "north", f"{CORE_UP}/{TRANSIT_PREFIX}",
                   inet, "eth0", f"{INET_TRANSIT}/{TRANSIT_PREFIX}")
        run(["ip", "-n", router, "route", "add", "default", "via", CORE_DOWN])
        for network in (LAB_NETWORK, ACCESS_NETWORK):
            run(["ip", "-n", core, "route", "add", network, "via", ROUTER_TRANSIT])
        run(["ip", "-n", core, "route", "add", "default", "via", INET_TRANSIT])
        self._forwarding(router)
        self._forwarding(core)

    @staticmethod
    def _veth(left_ns: str, left: str, left_address: str, right_ns: str, right: str,
              right_address: str) -> None:
        run(["ip", "link", "add", "name", left, "netns", left_ns, "type", "veth",
             "peer", "name", right, "netns", right_ns])
        for namespace, name, address in ((left_ns, left, left_address),
                                         (right_ns, right, right_address)):
            run(["ip", "-n", namespace, "addr", "add", address, "dev", name])
            run(["ip", "-n", namespace, "link", "set", name, "up"])

    @staticmethod
    def _forwarding(namespace: str) -> None:
        # icmp_ratemask=0: a scenario's `reject` answers every packet it matches, and
        # every router answers each TTL-limited probe of a trace with time-exceeded;
        # the kernel's limits (one ICMP error per second per destination, and
        # icmp_msgs_per_sec with a burst of 50 per host, which icmp_ratelimit=0
        # alone leaves on) would turn some of those into silence when a pass's
        # traces start at once; an empty mask lifts both
        for setting in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                        "net.ipv6.conf.all.disable_ipv6=1", "net.ipv4.icmp_ratelimit=0",
                        "net.ipv4.icmp_ratemask=0"):
            run(["sysctl", "-q", "-w", setting], namespace=namespace)

    def _internet(self) -> None:
        inet = self.inet_ns
        for network in (LAB_NETWORK, ACCESS_NETWORK):
            run(["ip", "-n", inet, "route", "add", network, "via", CORE_UP])
        for address in SERVICES.values():
            run(["ip", "-n", inet, "addr", "add", f"{address}/32", "dev", "lo"])
        # the far end routes nothing: a packet for an address it does not hold (a
        # bogon a censor's resolver gave) goes nowhere. A new namespace inherits the
        # host's IPv4 forwarding; with it on, such packets got ICMP net-unreachable
        run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv4.ip_forward=0"], namespace=inet)
        self._resolv_conf(inet)

    def _probe_host(self, link: LinkType) -> None:
        host, access, router = self.probe_ns(link), self.access_ns(link), self.router_ns
        upstream, downstream = access_uplink(link)
        self._veth(router, str(link), f"{upstream}/{TRANSIT_PREFIX}",
                   access, "north", f"{downstream}/{TRANSIT_PREFIX}")
        self._veth(access, "south", f"{router_address(link)}/24",
                   host, "eth0", f"{probe_address(link)}/24")
        run(["ip", "-n", router, "route", "add", link_subnet(link), "via", downstream])
        run(["ip", "-n", access, "route", "add", "default", "via", upstream])
        self._forwarding(access)
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
