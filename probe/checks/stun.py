"""`stun`: a Binding request over UDP, TCP or TLS (RFC 8489 §6-7, RFC 5389).

Proves that a STUN server answers from this network: a response with our
transaction id, the magic cookie, a valid FINGERPRINT when one is present and
a plausible XOR-MAPPED-ADDRESS. On UDP each retransmission is a new
transaction, so every attempt's round-trip time (or loss) is known. The mapped
address is kept only as facts about it (NAT or not, address kind, family),
never the address itself.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aioice.stun import Class, Message, Method

from probe.checks.base import Context, Observation, Operation, carried
from probe.checks.results import finish, open_endpoint, unanswered
from probe.core.errors import BadCookie, Mismatch, StepFailed
from probe.core.failures import Failure, scrub
from probe.net.flow import Transaction, answer_deadline, exchange
from probe.wire import stun as stunmsg

NAME = "stun"
VERSION = "1"
DEFAULT_TIMEOUT = 5.0

Address = tuple[str, int]


async def run(endpoint: Any, ctx: Context) -> Observation:
    try:
        flow, deadline = await open_endpoint(endpoint, ctx, stunmsg.frame_length)
    except StepFailed as exc:
        return carried(exc)
    ids: list[bytes] = []

    def request(attempt: int) -> bytes:
        message = Message(Method.BINDING, Class.REQUEST)
        ids.append(message.transaction_id)
        return bytes(message)

    try:
        outcome = await exchange(flow, request, lambda data: match(data, ids),
                                 answer_deadline(deadline, ctx.timeout))
    finally:  # also when cancelled: never leave the socket open
        flow.close()
    return finish(flow, observe(outcome, flow.local, flow.address, flow.transport))


def match(data: bytes, ids: list[bytes]) -> tuple[Message, int]:
    """The message if it answers one of our requests; Mismatch or ValueError if not."""
    try:
        message = stunmsg.parse(data)
    except BadCookie as exc:
        raise Mismatch(str(exc)) from exc
    if message.transaction_id not in ids:
        raise Mismatch(f"STUN {message.message_class.name.lower()} with a transaction id "
                       "we never sent")
    return message, ids.index(message.transaction_id)


def observe(outcome: Transaction[Message], local: Address, server: str,
            transport: Any) -> Observation:
    evidence = outcome.evidence()
    if outcome.reply is not None:
        return judge(outcome.reply, local, server, evidence)
    return unanswered(outcome, evidence, transport, Operation.STUN_REQUEST,
                      Operation.STUN_RESPONSE)


def judge(message: Message, local: Address, server: str,
          evidence: dict[str, Any]) -> Observation:
    """What a message carrying our transaction id shows (RFC 8489 §6.3)."""
    evidence.update(server_attributes(message))
    if message.message_method != Method.BINDING or message.message_class in (
            Class.REQUEST, Class.INDICATION):
        # e.g. our own request reflected by an echo service or a middlebox
        evidence["unexpected"] = (f"{message.message_method.name.lower()} "
                                  f"{message.message_class.name.lower()}")
        return Observation.failed(Failure.UNEXPECTED_RESPONSE, Operation.STUN_RESPONSE,
                                  phase="response", **evidence)
    if message.message_class == Class.ERROR:
        evidence["error_code"] = message.error_code  # still a STUN server answering
        return Observation.ok(**evidence)
    mapped = message.attributes.get("XOR-MAPPED-ADDRESS")
    if mapped is None and "MAPPED-ADDRESS" in message.attributes:
        mapped = message.attributes["MAPPED-ADDRESS"]  # an RFC 3489-era server
    if mapped is None:
        return Observation.failed(Failure.PROTOCOL_ERROR, Operation.STUN_RESPONSE, phase="response",
                                  error="success response without a mapped address", **evidence)
    evidence["mapped"] = mapped_evidence(mapped, local)
    problem = implausible_mapping(mapped, local, server)
    if problem:
        return Observation.failed(Failure.FORGED_RESPONSE, Operation.STUN_RESPONSE,
                                  phase="response", implausible=problem, **evidence)
    return Observation.ok(**evidence)


def server_attributes(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": sorted(message.attributes),
                           "fingerprint": "FINGERPRINT" in message.attributes}
    if "SOFTWARE" in message.attributes:
        out["software"] = scrub(str(message.attributes["SOFTWARE"]))[:80]
    return out


def address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "shared"  # RFC 6598: carrier-grade NAT
    if ip.is_private:
        return "private"
    return "global" if ip.is_global else "reserved"


def mapped_evidence(mapped: Address, local: Address) -> dict[str, Any]:
    """Facts about a mapped address that identify nobody: whether it differs
    from the local socket address (a NAT is on the path), its kind and family."""
    ip, local_ip = ipaddress.ip_address(mapped[0]), ipaddress.ip_address(local[0])
    return {"nat": (ip, mapped[1]) != (local_ip, local[1]), "kind": address_kind(ip),
            "family": ip.version, "port_preserved": mapped[1] == local[1]}


def implausible_mapping(mapped: Address, local: Address, server: str) -> str | None:
    """Why no real server could have seen this source address, or None.

    Kept narrow on purpose: behind a NAT or a carrier-grade NAT almost any
    mapped address is possible, so only what no path can produce counts."""
    ip = ipaddress.ip_address(mapped[0])
    server_ip, local_ip = ipaddress.ip_address(server), ipaddress.ip_address(local[0])
    if mapped[1] == 0:
        return "mapped port 0"
    if ip.is_unspecified or ip.is_multicast:
        return "unspecified or multicast mapped address"
    if ip.is_loopback and not server_ip.is_loopback:
        return "loopback mapped address from a remote server"
    if local_ip.is_global and server_ip.is_global and not ip.is_global:
        # with a public address of our own, no NAT can have mapped us into private space
        return "non-global mapped address although the probe's own address is public"
    return None
