"""Pure helpers of the `webrtc` check: the evidence made of aiortc's
statistics (W3C webrtc-stats), echo times and the selected ICE pair (what an
SDP says about candidates is `probe.wire.sdp`). No aiortc import here: these
work on plain values."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

MEDIA_RATE = 50  # packets a second the reference peer sends (20 ms Opus frames)
GAP_MS = 800.0  # a silence at least this long ...
MISSING = 40  # ... with at least this many packets missing (0.8 s of audio): interrupted
SLICE_MS = 250.0  # the timeline's resolution in the record


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
            # RFC 3550 §6.4.1: the fraction lost is a fixed-point number (/256)
            out["peer_loss"] = round(float(item.fractionLost) / 256, 3)
            out["peer_jitter_ms"] = round(item.jitter / clock_rate * 1000, 2)
            if item.roundTripTime is not None:
                out["rtcp_rtt_ms"] = round(item.roundTripTime * 1000, 1)
    return out


@dataclass(frozen=True)
class MediaSample:
    """One look at the call's audio counters, `ms` after DTLS was up."""

    ms: float
    received: int  # RTP packets from the peer so far (inbound-rtp)
    reports: int  # RTCP receiver reports from the peer so far (about what it got from us)


def timeline_evidence(samples: Sequence[MediaSample]) -> dict[str, Any]:
    """Whether the audio from the peer was sustained over the whole window:
    packets received against those the peer sent (MEDIA_RATE a second from
    the first arrival), the longest silence, and, when audio stopped or paused
    with at least MISSING packets lost and a silence of GAP_MS or more,
    `interrupted` with the moment it stopped (`stopped_ms`, after DTLS). A
    busy event loop delays samples, never packets: a silence whose packets
    arrive late in a burst misses nothing and is not an interruption.
    `slices` counts the packets per SLICE_MS; `reports_ms` says when the
    peer's receiver reports arrived (they stop when the flow back is cut)."""
    if not samples:
        return {}
    end = samples[-1].ms
    base = samples[0].received
    arrivals = [s.ms for before, s in pairwise(samples)
                if s.received > before.received]
    reports = [s.ms for before, s in pairwise(samples)
               if s.reports > before.reports]
    received = samples[-1].received - base
    slices = [0] * (int(end // SLICE_MS) + 1)
    for before, s in pairwise(samples):
        slices[min(int(s.ms // SLICE_MS), len(slices) - 1)] += s.received - before.received
    out: dict[str, Any] = {"window_ms": round(end, 1), "slices": slices,
                           "reports_ms": [round(ms) for ms in reports]}
    if not arrivals:
        return out | {"packets_expected": None, "interrupted": False}
    first, last = arrivals[0], arrivals[-1]
    expected = round((end - first) / 1000 * MEDIA_RATE) + 1
    gaps = [b - a for a, b in pairwise(arrivals)] + [end - last]
    longest = max(gaps)
    interrupted = longest >= GAP_MS and expected - received >= MISSING
    out.update(first_ms=round(first, 1), last_ms=round(last, 1), packets_expected=expected,
               missing=max(expected - received, 0), longest_gap_ms=round(longest, 1),
               interrupted=interrupted)
    if interrupted and end - last >= GAP_MS:
        out["stopped_ms"] = round(last, 1)  # nothing came after this moment
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
