"""The measured network: what every record of a pass says, signed, about the
network it was measured on (docs/measurement.md, `network`).

Learnt once at the start of a pass, from the link that carries the pass:
- the link: the local access link and the upstream network kind, each with
  how it was decided (`probe.run.linktype`);
- the attribution: country, ASN, AS name and the resolver's ASN, with where
  they came from (`control`, `local` or `none`).
A `NetworkWatch` then notices when the network changes under the pass (a
laptop roaming from Wi-Fi to its tether, a modem getting a new address):
records finished after the change carry it in `network.changes`, since a
signed record cannot be amended afterwards.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from probe.core.record import Attribution, LinkType
from probe.run import linktype
from probe.run.linktype import LinkFacts

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
    kind: str  # `route` (interface or source address), ...
    detail: str

    def as_record(self) -> dict[str, Any]:
        return {"at_ms": self.at_ms, "kind": self.kind, "detail": self.detail}


@dataclass
class MeasuredNetwork:
    link: LinkFacts
    attribution: AttributionFacts = field(default_factory=AttributionFacts)
    changes: list[NetworkChange] = field(default_factory=list)

    def record_fields(self) -> dict[str, Any]:
        """The record's signed `network` object (without lab-only keys)."""
        fields: dict[str, Any] = {
            "link_type": self.link.link_type, "link_type_source": self.link.link_type_source,
            "access": self.link.access, "access_source": self.link.access_source,
            "upstream": self.link.upstream, "upstream_source": self.link.upstream_source,
            "cc": self.attribution.cc, "asn": self.attribution.asn,
            "as_org": self.attribution.as_org, "resolver_asn": self.attribution.resolver_asn,
            "attribution": self.attribution.source,
        }
        if self.changes:
            fields["changes"] = [c.as_record() for c in self.changes[:MAX_CHANGES]]
        return fields


def link_facts(choice: str) -> LinkFacts:
    """The link as the user gave it (`--link-type`, the config), else as detected."""
    if choice != "auto":
        return linktype.from_user(LinkType(choice))
    return linktype.detect_facts()


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
    return RouteState(linktype.default_interface(), source)


class NetworkWatch:
    """Notices a change of the default route's interface or source address during a
    pass. The address itself is compared, never recorded: it may identify the
    volunteer."""

    def __init__(self, network: MeasuredNetwork, read: Any = route_state) -> None:
        self.network = network
        self.read = read
        self.start = time.monotonic()
        self.state: RouteState = read()

    def poll(self) -> NetworkChange | None:
        state = self.read()
        if state == self.state:
            return None
        if state.interface != self.state.interface:
            detail = f"{self.state.describe()} -> {state.describe()}"
        else:
            detail = f"source address changed on {state.describe()}"
        self.state = state
        change = NetworkChange(round((time.monotonic() - self.start) * 1000), "route", detail)
        self.network.changes.append(change)
        return change
