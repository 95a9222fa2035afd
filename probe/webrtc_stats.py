"""Pure helpers of the `webrtc` check: what an SDP says about candidates, and
the evidence made of aiortc's statistics (W3C webrtc-stats), echo times and
the selected ICE pair. No aiortc import here: these work on plain values."""

from __future__ import annotations

import ipaddress
import statistics
from collections.abc import Iterable
from typing import Any

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


def usable_gathering(counts: dict[str, int], policy: str) -> bool:
    """With `relay` only relay candidates count (RFC 8829 §4.1.1 "relay")."""
    return counts["relay"] > 0 if policy == "relay" else sum(counts.values()) > 0


def echo_evidence(sent: int, rtts_ms: Iterable[float]) -> dict[str, Any]:
    times = sorted(rtts_ms)
    out: dict[str, Any] = {"sent": sent, "received": len(times),
                           "loss": round(1 - len(times) / sent, 3) if sent else None}
    if times:
        out["rtt_ms"] = {"min": round(times[0], 1), "median": round(statistics.median(times), 1),
                         "max": round(times[-1], 1)}
    return out


def media_evidence(stats: Iterable[Any], clock_rate: int, seconds: float) -> dict[str, Any]:
    """Audio RTP both ways, from a getStats() report: `sent` (outbound-rtp),
    `received` (inbound-rtp: our audio as the peer sent it back), loss and
    jitter as the receivers measured them (RFC 3550 §6.4.1, A.8), and what the
    peer's RTCP receiver reports said (remote-inbound-rtp)."""
    out: dict[str, Any] = {"seconds": round(seconds, 2), "packets_sent": 0,
                           "packets_received": 0, "rtcp_reports": False}
    for item in stats:
        kind = getattr(item, "type", None)
        if getattr(item, "kind", "audio") != "audio":
            continue
        if kind == "outbound-rtp":
            out["packets_sent"] += item.packetsSent
            out["bytes_sent"] = out.get("bytes_sent", 0) + item.bytesSent
        elif kind == "inbound-rtp":
            out["packets_received"] += item.packetsReceived
            expected = item.packetsReceived + max(item.packetsLost, 0)
            out["loss"] = round(max(item.packetsLost, 0) / expected, 3) if expected else None
            out["jitter_ms"] = round(item.jitter / clock_rate * 1000, 2)
        elif kind == "remote-inbound-rtp":
            out["rtcp_reports"] = True
            out["peer_loss"] = round(float(item.fractionLost), 3)
            out["peer_jitter_ms"] = round(item.jitter / clock_rate * 1000, 2)
            if item.roundTripTime is not None:
                out["rtcp_rtt_ms"] = round(item.roundTripTime * 1000, 1)
    return out


def transport_traffic(stats: Iterable[Any]) -> tuple[int, int]:
    """(bytes sent, bytes received) of the DTLS transports: every datagram of
    the call after ICE (DTLS, SCTP, SRTP, SRTCP), UDP/IP headers not counted."""
    sent = received = 0
    for item in stats:
        if getattr(item, "type", None) == "transport":
            sent += item.bytesSent
            received += item.bytesReceived
    return sent, received


def pair_evidence(pair: Any) -> dict[str, Any] | None:
    """The nominated pair's candidate types and transport; never addresses."""
    if pair is None:
        return None
    return {"local": pair.local_candidate.type, "remote": pair.remote_candidate.type,
            "protocol": pair.local_candidate.transport}
