"""What an SDP (RFC 8866) says about ICE candidates (RFC 8839 §5.1): their
types, never their addresses. Pure functions on the SDP text."""

from __future__ import annotations

import ipaddress

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


def sdp_candidates(sdp: str) -> list[tuple[str, str]]:
    """(type, address) of each distinct candidate of an SDP (RFC 8839 §5.1).

    The same candidate appears under every bundled m-line: one per foundation
    (a hash of type, base address and transport, RFC 8445 §5.1.1.3) and component."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        fields = line.split()
        # foundation component transport priority address port "typ" type ...
        if len(fields) >= 8 and fields[6] == "typ":
            found.setdefault((fields[0], fields[1]), (fields[7], fields[4]))
    return list(found.values())


def candidate_counts(sdp: str) -> dict[str, int]:
    """Candidates of an SDP by type; the addresses are never kept."""
    counts = dict.fromkeys(CANDIDATE_TYPES, 0)
    for kind, _ in sdp_candidates(sdp):
        if kind in counts:
            counts[kind] += 1
    return counts


def reachable_candidate(sdp: str, signalling_address: str | None) -> bool:
    """Whether the answer offers a candidate a working network can reach: a
    relay or server-reflexive one (its ICE servers answered it), a host
    candidate on a global address, or on the very address the probe just
    reached over TCP for signalling. The peer's word that it is up."""
    for kind, address in sdp_candidates(sdp):
        if kind in ("relay", "srflx"):
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue  # an mDNS name: proves nothing about reachability
        if ip.is_global or address == signalling_address:
            return True
    return False
