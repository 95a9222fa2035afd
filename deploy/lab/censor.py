"""Scenario primitives -> an nftables ruleset and tc commands for the router.

Rules sit on the router's forward hook, in one chain per link type and
direction (`up_cellular`: from the probe, `down_cellular`: toward it), so
the probe's own stack behaves as on a real network: a dropped datagram is
silence, not the EPERM a drop on the sender's output hook would give.

- drop, reset, icmp act on the probe's packets (that is enough to kill a flow);
  a drop `after` N packets acts on both directions of a flow once conntrack
  counted N packets of it (a call that sets up, then is cut);
- loss and rate act on both directions;
- rate marks packets (`meta mark`, and `meta priority` = the htb class id, which
  htb honours before any filter) and tc htb gives each mark a class on the
  egress of the router's interface in that direction;
- rate and loss with a `payload` act on the whole flow the payload was seen in,
  both ways (a conntrack mark), as a DPI classifier does;
- dns sends the link's port 53 to the lying resolver (DNAT keeps the probe's
  source address, by which the liar picks the link's view);
- `down` hosts drop everything addressed to them in the internet namespace, so
  the control (which runs there) fails too, as with a real outage.

Each install replaces the previous policy atomically (`nft -f` of one script).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deploy.lab import addresses
from deploy.lab.scenario import (
    DnsRule,
    DropRule,
    IcmpRule,
    LossRule,
    RateRule,
    ResetRule,
    Scenario,
    _Selector,
)
from deploy.lab.shell import UsageError, run
from deploy.lab.topology import Topology

TABLE = "voipwatch_lab"
PAYLOADS = {
    # RFC 8489 section 5: magic cookie at offset 4 of the STUN header (UDP header: 8 bytes)
    "stun": "@th,96,32 0x2112a442",
    # RFC 6347 section 4.1: content type 22 (handshake), then the version's first byte 0xfe
    "dtls": "@th,64,8 0x16 @th,72,8 0xfe",
    # RFC 7983 section 7: a first byte of 128-191 is RTP or RTCP; STUN (0-3), DTLS
    # (20-63, which carries a data channel's SCTP) and TURN ChannelData (64-79) pass
    "rtp": "@th,64,8 & 0xc0 == 0x80",
    # RFC 8446 section 5.1: a TCP segment whose payload starts a handshake record
    # (content type 22, version 3.x): the ClientHello, where a censor reads the SNI
    "tls": "@ih,0,16 0x1603",
}


@dataclass
class Compiled:
    router_nft: str
    inet_nft: str
    tc: list[list[str]] = field(default_factory=list)
    dns_views: dict[str, dict[str, Any]] = field(default_factory=dict)


def _set(values: Iterable[str | int]) -> str:
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


class Compiler:
    """Compiles scenarios; `service` and `role` selectors name the hosts of the
    matching endpoints of `catalogue` (the lab catalogue)."""

    def __init__(self, catalogue: Any) -> None:
        self.catalogue = catalogue

    def addresses(self, selector: _Selector) -> list[str] | None:
        """The destination addresses a selector names (None: any)."""
        chosen: set[str] | None = None
        if selector.hosts:
            try:
                chosen = {addresses.resolve(h) for h in selector.hosts}
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if selector.service or selector.role:
            found = set()
            for service in self.catalogue.services:
                if selector.service and service.id != selector.service:
                    continue
                for endpoint in service.endpoints:
                    if selector.role and endpoint.role != selector.role:
                        continue
                    for host in service_hosts(endpoint):
                        try:
                            address = addresses.resolve(host)
                        except ValueError:
                            continue
                        # the collector (test helper, uploads) is the lab's own
                        # infrastructure, even where a check (throttle, webrtc) uses it
                        # as its server: naming it takes an explicit `hosts: [collector.lab]`
                        if address != addresses.SERVICES["collector"]:
                            found.add(address)
            chosen = found if chosen is None else chosen & found
        if chosen is not None and not chosen:
            wanted = selector.model_dump(exclude_none=True, exclude_defaults=True)
            raise UsageError(f"a rule selects no host at all: {wanted}")
        return sorted(chosen) if chosen is not None else None

    def match(self, selector: _Selector, upstream: bool) -> str:
        parts = []
        hosts = self.addresses(selector)
        if hosts:
            parts.append(f"ip {'daddr' if upstream else 'saddr'} {_set(hosts)}")
        if selector.proto and selector.ports:
            port = "dport" if upstream else "sport"
            parts.append(f"{selector.proto} {port} {_set(selector.ports)}")
        elif selector.proto:
            parts.append(f"meta l4proto {selector.proto}")
        if selector.payload:
            if not selector.proto:
                parts.append("meta l4proto udp")
            if selector.payload == "tls" and not selector.ports:
                parts.append("meta l4proto tcp")
            parts.append(PAYLOADS[selector.payload])
        return " ".join(parts)

    def compile(self, scenario: Scenario, topology: Topology) -> Compiled:
        forward = []
        chains: list[str] = []
        redirects = []
        tc: list[list[str]] = []
        views: dict[str, dict[str, Any]] = {}
        upstream_classes: list[tuple[int, int]] = []
        for link, rules in scenario.policy.items():
            if link not in topology.links:
                raise UsageError(f"scenario {scenario.name}: the lab has no {link} probe host")
            name = str(link)
            up: list[str] = []
            down: list[str] = []
            downstream_classes: list[tuple[int, int]] = []
            for index, rule in enumerate(rules, start=1):
                if isinstance(rule, DnsRule):
                    lies = views.setdefault(addresses.link_subnet(link), {})
                    for dns_name in rule.names:
                        lies[dns_name.lower()] = (rule.answer if isinstance(rule.answer, str)
                                                  else list(rule.answer))
                    continue
                up_match, down_match = self.match(rule, True), self.match(rule, False)
                if isinstance(rule, (LossRule, RateRule)) and rule.payload:
                    # a classifier: the whole flow, both ways, once its payload was seen
                    flow = addresses.link_number(link) * 0x100 + index
                    up.append(_rule(up_match, f"ct mark set {flow:#x}"))
                    up_match = down_match = f"ct mark {flow:#x}"
                if isinstance(rule, DropRule) and rule.after:
                    # conntrack counts the flow's packets in its first packet's direction
                    cut = f"ct original packets > {rule.after} drop"
                    up.append(_rule(up_match, cut))
                    down.append(_rule(down_match, cut))
                elif isinstance(rule, DropRule):
                    up.append(_rule(up_match, "drop"))
                elif isinstance(rule, ResetRule):
                    up.append(_rule(up_match, "reject with tcp reset"))
                elif isinstance(rule, IcmpRule):
                    up.append(_rule(up_match, f"reject with icmp type {rule.type}"))
                elif isinstance(rule, LossRule):
                    lose = f"numgen random mod 100 < {rule.percent} drop"
                    up.append(_rule(up_match, lose))
                    down.append(_rule(down_match, lose))
                elif isinstance(rule, RateRule):
                    mark = addresses.link_number(link) * 0x100 + index
                    # htb takes skb->priority as the class id (no tc filter needed: this
                    # kernel's u32 lacks `match mark`, and ignoring it matched every packet)
                    classify = f"meta mark set {mark:#x} meta priority set 1:{mark:x}"
                    up.append(_rule(up_match, classify))
                    down.append(_rule(down_match, classify))
                    upstream_classes.append((mark, rule.kbit))
                    downstream_classes.append((mark, rule.kbit))
            if up:
                forward.append(f'iifname "{name}" jump up_{name}')
                chains.append(_chain(f"up_{name}", up))
            if down:
                forward.append(f'oifname "{name}" jump down_{name}')
                chains.append(_chain(f"down_{name}", down))
            if addresses.link_subnet(link) in views:
                redirects.append(f'iifname "{name}" meta l4proto {{ tcp, udp }} th dport 53 '
                                 f'dnat ip to {addresses.SERVICES["liar"]}')
            tc.extend(_htb(name, downstream_classes))
        tc.extend(_htb("inet", upstream_classes))
        body = [_base_chain("forward", "filter hook forward priority filter", forward)]
        body.extend(chains)
        if redirects:
            body.append(_base_chain("redirect_dns", "nat hook prerouting priority dstnat",
                                    redirects))
        router = _table(body)
        down_hosts = []
        for host in scenario.down:
            try:
                down_hosts.append(addresses.resolve(host))
            except ValueError as exc:
                raise UsageError(f"scenario {scenario.name}: down: {exc}") from None
        inet_rules = [f"ip daddr {_set(sorted(set(down_hosts)))} drop"] if down_hosts else []
        inet = _table([_base_chain("input", "filter hook input priority filter", inet_rules)])
        return Compiled(router, inet, tc, views)


def service_hosts(endpoint: Any) -> list[str]:
    """The hosts of the service's own servers an endpoint talks to: its host;
    a webrtc call's ICE servers (its `url` is the collector's reference peer);
    none for throttle (the collector's reflector imitates the service)."""
    if endpoint.check == "throttle":
        return []
    if endpoint.check == "webrtc":
        return [ice_host(url) for server in endpoint.ice_servers
                for url in ((server.urls,) if isinstance(server.urls, str) else server.urls)]
    return [endpoint.host]


def ice_host(url: str) -> str:
    """The host of a `stun:`/`turn:` URL (RFC 7064, RFC 7065): `turn:[2001:db8::1]:3478`."""
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.split(":", 1)[0]


def _rule(match: str, action: str) -> str:
    return f"{match} {action}" if match else action


def _chain(name: str, rules: list[str]) -> str:
    return f"  chain {name} {{\n" + "".join(f"    {r}\n" for r in rules) + "  }\n"


def _base_chain(name: str, hook: str, rules: list[str]) -> str:
    lines = [f"type {hook}; policy accept;", *rules]
    return f"  chain {name} {{\n" + "".join(f"    {r}\n" for r in lines) + "  }\n"


def _table(chains: list[str]) -> str:
    # create-then-delete makes the replacement work whether or not the table exists
    return (f"table inet {TABLE} {{ }}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n" + "".join(chains) + "}\n")


def _htb(device: str, classes: list[tuple[int, int]]) -> list[list[str]]:
    if not classes:
        return []
    # unclassified traffic is not shaped (htb's direct queue: no default class)
    commands = [["tc", "qdisc", "add", "dev", device, "root", "handle", "1:", "htb"]]
    for mark, kbit in classes:
        classid = f"1:{mark:x}"
        burst = f"{max(kbit * 1000 // 8 // 100, 15000)}b"
        # burst: at least a few full-size packets, or tbf/htb starve at low rates
        commands.append(["tc", "class", "add", "dev", device, "parent", "1:", "classid",
                         classid, "htb", "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit",
                         "burst", burst, "cburst", burst])
    return commands


def install(topology: Topology, compiled: Compiled) -> None:
    """Replace the router's and the internet's policy with `compiled`."""
    run(["nft", "-f", "-"], namespace=topology.router_ns, input=compiled.router_nft)
    run(["nft", "-f", "-"], namespace=topology.inet_ns, input=compiled.inet_nft)
    for namespace in (topology.router_ns, topology.inet_ns):
        # flows tracked under the previous policy keep its NAT (a DNS query whose
        # 5-tuple a new query reuses would skip the new scenario's redirect): forget
        # them; conntrack exits 1 when there was nothing to forget
        run(["conntrack", "-F"], namespace=namespace, check=False)
    for device in ["inet", *(str(link) for link in topology.links)]:
        # no qdisc of ours yet is fine: the kernel then answers "no such qdisc"
        run(["tc", "qdisc", "del", "dev", device, "root"], namespace=topology.router_ns,
            check=False)
    for command in compiled.tc:
        run(command, namespace=topology.router_ns)


def clear(topology: Topology) -> None:
    empty = Scenario(name="open", description="no censorship")
    install(topology, Compiler(None).compile(empty, topology))

