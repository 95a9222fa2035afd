"""The measured network: what every record of a pass says, signed, about the
network it was measured on (docs/measurement.md, `network`).

Learnt once at the start of a pass, from the link that carries the pass:
- the link: the local access link and the upstream network kind, each with
  how it was decided (`probe.run.linktype`);
- the attribution: country, ASN, AS name and the resolver's ASN, with where
  they came from (`control`, `local` or `none`).
A `NetworkWatch` then notices when the network changes under the pass (a
laptop roaming from Wi-Fi to its tether, a modem getting a new address),
detects the link again when the route changed, and records finished after
the change carry it in `network.changes` (kinds `route`, `access`,
`upstream`) and the new link, since a signed record cannot be amended
afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from probe.core.record import Attribution, LinkType
from probe.run import linktype, linktype_asn, linktype_sysfs
from probe.run.linktype import Host, LinkFacts

# An address of TEST-NET-1 (RFC 5737): connecting a UDP socket to it asks the
# kernel for the route, and so for the source address, without sending anything.
ROUTE_PROBE = ("192.0.2.1", 9)
MAX_CHANGES = 32


@dataclass(frozen=True)
class AttributionFacts:
    cc: str | None = None
    asn: int | None = None
    as_org: str | None = None
    resolver_asn: int | None = None
    source: Attribution = Attribution.NONE


@dataclass(frozen=True)
class NetworkChange:
    at_ms: int  # since the start of the pass
    kind: str  # `route` (interface or source address), `access`, `upstream`
    detail: str

    def as_record(self) -> dict[str, Any]:
        return {"at_ms": self.at_ms, "kind": self.kind, "detail": self.detail}


@dataclass
class MeasuredNetwork:
    link: LinkFacts
    attribution: AttributionFacts = field(default_factory=AttributionFacts)
    changes: list[NetworkChange] = field(default_factory=list)

    def current_link(self) -> LinkFacts:
        """The link, with the measured network's ASN as a last hint once attribution
        has learnt it (linktype_asn)."""
        return linktype.with_hint(self.link, linktype_asn.hint(self.attribution.asn))

    def record_fields(self) -> dict[str, Any]:
        """The record's signed `network` object (without lab-only keys)."""
        fields: dict[str, Any] = {
            **self.current_link().record_fields(),
            "cc": self.attribution.cc, "asn": self.attribution.asn,
            "as_org": self.attribution.as_org, "resolver_asn": self.attribution.resolver_asn,
            "attribution": self.attribution.source,
        }
        if self.changes:
            fields["changes"] = [c.as_record() for c in self.changes[:MAX_CHANGES]]
        return fields


def link_facts(choice: str, host: Host | None = None) -> LinkFacts:
    """The link as detected, the user's word (`--link-type`, the config) winning
    for the facts it states."""
    detected = linktype.detect_facts(host)
    if choice != "auto":
        return linktype.from_user(LinkType(choice), detected)
    return detected


@dataclass(frozen=True)
class RouteState:
    interface: str | None
    source: str | None  # the source address of the default route, never recorded

    def describe(self) -> str:
        return f"interface {self.interface or 'none'}"


def route_state() -> RouteState:
    source: str | None = None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(ROUTE_PROBE)
            source = sock.getsockname()[0]
    except OSError:
        source = None
    route = linktype_sysfs.default_route(Host().root)
    return RouteState(route.interface if route else None, source)


class NetworkWatch:
    """Notices a change of the default route's interface or source address during a
    pass, then detects the link again (`detect`, off the event loop) and records a
    change of the access link or of the upstream kind. The address itself is
    compared, never recorded: it may identify the volunteer."""

    def __init__(self, network: MeasuredNetwork, read: Callable[[], RouteState] = route_state,
                 detect: Callable[[], LinkFacts] | None = None) -> None:
        self.network = network
        self.read = read
        self.detect = detect
        self.start = time.monotonic()
        self.state: RouteState = read()
        self.stale = False  # the route changed since the link was last detected
        self.lock = asyncio.Lock()

    def _change(self, kind: str, detail: str) -> NetworkChange:
        change = NetworkChange(round((time.monotonic() - self.start) * 1000), kind, detail)
        self.network.changes.append(change)
        return change

    def poll(self) -> NetworkChange | None:
        """Compare the route with the last one seen (cheap: no I/O but /proc and a
        connect() that sends nothing)."""
        state = self.read()
        if state == self.state:
            return None
        if state.interface != self.state.interface:
            detail = f"{self.state.describe()} -> {state.describe()}"
        else:
            detail = f"source address changed on {state.describe()}"
        self.state = state
        self.stale = self.detect is not None
        return self._change("route", detail)

    def relink(self, link: LinkFacts) -> list[NetworkChange]:
        """Adopt a newly detected link, recording what changed."""
        old, self.network.link = self.network.link, link
        out = []
        if link.access != old.access:
            out.append(self._change("access", f"{old.access} ({old.access_source}) -> "
                                    f"{link.access} ({link.access_source})"))
        if link.upstream != old.upstream:
            out.append(self._change("upstream", f"{old.upstream} ({old.upstream_source}) -> "
                                    f"{link.upstream} ({link.upstream_source})"))
        return out

    async def check(self) -> list[NetworkChange]:
        """Poll the route; after a change, detect the link again before the next
        record is made (one detection at a time, in a thread: D-Bus and the
        platform's tools must not stall the pass)."""
        changes: list[NetworkChange] = []
        route = self.poll()
        if route is not None:
            changes.append(route)
        if not self.stale or self.detect is None:
            return changes
        async with self.lock:
            if self.stale:
                self.stale = False
                changes += self.relink(await asyncio.to_thread(self.detect))
        return changes


def watch_for(network: MeasuredNetwork, choice: str) -> NetworkWatch:
    """The watch of a pass whose link was chosen as `choice` (`auto` or a LinkType)."""
    return NetworkWatch(network, detect=partial(link_facts, choice))
