"""Where on the path, and injected or genuine: what a TTL-limited trace
(probe.net.trace) says about a blocked endpoint.

`locate`: each TTL's probe ends with the first reply that decides it:
time-exceeded from a router (the probe went no further), a RST or an ICMP
unreachable (blocking), the server's answer (it went through), or nothing.
A router forwarding a packet drops, resets or rejects it after its TTL check
(as Linux does, before the forward hook), so the censoring device is the
last hop that answered time-exceeded: with the censor at hop N, TTL N
gives time-exceeded from it and TTL N+1 the RST, the ICMP error or silence.
`hop` is that N ("blocked at or just after hop N"); routers that never send
time-exceeded make it the last hop that did.

`injection`: a RST is compared with the genuine server's traits, within the
same flow where there is one (the SYN-ACK of the connection whose
ClientHello was reset: same path, so the same IP TTL) and with the path
itself: a RST's IP TTL says how many hops it came (from the initial TTL its
sender most likely used: 64, 128 or 255), and a RST that came from nearer
than the hops the probe needed to trigger it was sent by something on the
path, not by the server. A mismatch is evidence of on-path injection;
agreement proves nothing (an injector may copy the server's traits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from probe.net.trace import Probe, Reply

INITIAL_TTLS = (64, 128, 255)


def _decisive(method: str, probe: Probe) -> Reply | None:
    for reply in probe.replies:
        if reply.kind == "syn_ack" and method != "tcp_syn":
            continue  # the connection's set-up, before the ClientHello
        return reply
    return None


def _kind(method: str, reply: Reply | None) -> str:
    if reply is None:
        return "none"
    return "answer" if reply.kind == "syn_ack" else reply.kind


def locate(method: str, probes: Sequence[Probe]) -> dict[str, Any]:
    hops: list[dict[str, Any]] = []
    routers: list[int] = []
    blocked: int | None = None
    reached: int | None = None
    action = "drop"
    for probe in sorted(probes, key=lambda p: p.ttl):
        reply = _decisive(method, probe)
        kind = _kind(method, reply)
        hop: dict[str, Any] = {"ttl": probe.ttl, "reply": kind}
        if reply is not None and reply.icmp is not None:
            hop["icmp"] = list(reply.icmp)
            hop["public"] = reply.public  # never the router's address itself
        if probe.error:
            hop["error"] = probe.error
        hops.append(hop)
        if kind == "time_exceeded":
            routers.append(probe.ttl)
        elif kind in ("reset", "unreachable") and blocked is None and reached is None:
            blocked, action = probe.ttl, kind
        elif kind == "answer" and reached is None and blocked is None:
            reached = probe.ttl
    out: dict[str, Any] = {"method": method, "max_ttl": len(probes), "hops": hops}
    if reached is not None:
        return out | {"action": "none", "hop": None, "reached_ttl": reached}
    limit = blocked if blocked is not None else len(probes) + 1
    before = [ttl for ttl in routers if ttl < limit]
    out.update(action=action, hop=max(before) if before else None,
               first_blocked_ttl=blocked if blocked is not None else
               (max(before) + 1 if before else None))
    return out


def initial_ttl(observed: int) -> int:
    return next(t for t in INITIAL_TTLS if observed <= t)


def sender_hop(reply: Reply) -> int | None:
    """How many hops away the reply's sender is, by its IP TTL (the sender is
    hop 1 when nothing between us decremented it)."""
    if reply.ip_ttl is None:
        return None
    return initial_ttl(reply.ip_ttl) - reply.ip_ttl + 1


def _traits(reply: Reply) -> dict[str, Any]:
    return {"ip_ttl": reply.ip_ttl, "ip_id": reply.ip_id, "window": reply.window,
            "options": list(reply.options or ()), "ms": reply.ms}


def injection(method: str, probes: Sequence[Probe]) -> dict[str, Any] | None:
    """The RST's traits against the genuine server's; None when no RST came."""
    ordered = sorted(probes, key=lambda p: p.ttl)
    first = next(((p, r) for p in ordered
                  if (r := _decisive(method, p)) is not None and r.kind == "reset"), None)
    if first is None:
        return None
    probe, rst = first
    mismatches = []
    found: dict[str, Any] = {"packet": "tcp_rst", "triggered_at_ttl": probe.ttl,
                             "rst": _traits(rst) | {"sender_hop": sender_hop(rst)}}
    hop = sender_hop(rst)
    if hop is not None and hop < probe.ttl:
        # the probe needed `ttl` hops to trigger it, the RST came from nearer
        mismatches.append("sender_hop")
    genuine = next((r for r in probe.replies if r.kind == "syn_ack"), None) \
        if method != "tcp_syn" else None
    if genuine is not None:
        found["genuine"] = {"source": "same_flow"} | _traits(genuine)
        if genuine.ip_ttl != rst.ip_ttl:
            mismatches.append("ip_ttl")
    found["mismatches"] = mismatches
    found["status"] = "injected" if mismatches else "consistent"
    return found
