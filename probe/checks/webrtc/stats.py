"""Pure helpers of the `webrtc` check: the evidence made of aiortc's
statistics (W3C webrtc-stats), echo times and the selected ICE pair (what an
SDP says about candidates is `probe.wire.sdp`). No aiortc import here: these
work on plain values."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any


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
