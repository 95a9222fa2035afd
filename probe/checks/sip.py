"""`sip`: an OPTIONS request over UDP, TCP or TLS (RFC 3261 §11).

Any SIP response, even 404, 405 or 483, proves that a SIP server answers from
this network. Comparing what comes back with what was sent shows a SIP ALG or
another middlebox rewriting the request: `received`/`rport` (RFC 3581) are the
server's normal additions, but a changed Via sent-by or Call-ID (both carry our
socket's address, which is what ALGs rewrite) means something on the path
edited the message. A rewrite is recorded, not treated
as blocking.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from probe.checks.base import Context, Observation, Operation, carried
from probe.checks.results import finish, open_endpoint, unanswered
from probe.core.errors import Mismatch, StepFailed
from probe.core.failures import scrub
from probe.core.record import Transport
from probe.net.flow import Transaction, answer_deadline, exchange
from probe.wire import sip as sipmsg

NAME = "sip"
VERSION = "1"
DEFAULT_TIMEOUT = 5.0
DEFAULT_PORTS = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}


def request_uri(endpoint: Any) -> str:
    if endpoint.uri:
        return str(endpoint.uri)
    transport = endpoint.transport
    port = "" if endpoint.port == DEFAULT_PORTS[transport] else f":{endpoint.port}"
    params = "" if transport is Transport.UDP else f";transport={transport}"
    return f"sip:{sipmsg.format_host(endpoint.host)}{port}{params}"


async def run(endpoint: Any, ctx: Context) -> Observation:
    try:
        flow, deadline = await open_endpoint(endpoint, ctx, sipmsg.frame_length)
    except StepFailed as exc:
        return carried(exc)
    sent = Sent(str(endpoint.transport), flow.local)
    request = sent.request(request_uri(endpoint))
    deadline = answer_deadline(deadline, ctx.timeout)
    provisional: list[int] = []
    try:
        outcome = await exchange(flow, request, sent.match, deadline)
        while outcome.reply is not None and outcome.reply.status < 200:
            # a provisional answer: stop retransmitting, wait for the final one (§17.1.2.2)
            if len(provisional) < 5:  # a server could send them without end
                provisional.append(outcome.reply.status)
            later = await exchange(flow, None, sent.match, deadline)
            later.attempts = outcome.attempts
            later.anomalies = (outcome.anomalies + later.anomalies)[:5]
            later.anomaly_count += outcome.anomaly_count
            outcome = later
    finally:  # also when cancelled: never leave the socket open
        flow.close()
    return finish(flow, observe(outcome, sent, provisional, flow.transport))


class Sent:
    """What we put in the request, to match the response and spot rewrites."""

    def __init__(self, transport: str, local: tuple[str, int]) -> None:
        self.transport = transport
        self.local = local
        self.branch = "z9hG4bK" + secrets.token_hex(10)  # RFC 3261 §8.1.1.7 magic cookie
        self.from_tag = secrets.token_hex(6)
        # the local address in the Call-ID, as many phones do: an ALG rewrites it
        self.call_id = f"{secrets.token_hex(12)}@{sipmsg.format_host(local[0])}"
        self.data = b""

    def request(self, uri: str) -> bytes:
        self.data = sipmsg.options_request(uri=uri, transport=self.transport, local=self.local,
                                           branch=self.branch, from_tag=self.from_tag,
                                           call_id=self.call_id)
        return self.data

    def match(self, data: bytes) -> tuple[sipmsg.Response, None]:
        """The response to our request (RFC 3261 §17.1.3: top Via branch and
        CSeq method); Mismatch or ValueError for anything else."""
        if data == self.data:
            raise Mismatch("our own request came back (reflected)")
        response = sipmsg.parse_response(data)
        via = sipmsg.parse_via(response.vias[0])
        if via.params.get("branch") != self.branch or response.cseq[1] != "OPTIONS":
            raise Mismatch("SIP response to a transaction we never started")
        return response, None

    def rewrites(self, response: sipmsg.Response) -> list[str]:
        """The fields we sent that came back changed (an ALG's signature)."""
        changed = []
        via = sipmsg.parse_via(response.vias[0])
        if not _same_host(via.host, self.local[0]) or via.port != self.local[1]:
            changed.append("via.sent-by")
        if via.transport != self.transport.upper():
            changed.append("via.transport")
        if response.get("call-id") != self.call_id:
            changed.append("call-id")
        return changed

    def nat(self, response: sipmsg.Response) -> bool | None:
        """Whether the server saw another source address (RFC 3581
        received/rport); None when it does not say."""
        via = sipmsg.parse_via(response.vias[0])
        received, rport = via.params.get("received"), via.params.get("rport")
        if received is None and not rport:
            return None
        moved = received is not None and not _same_host(received, self.local[0])
        return moved or (bool(rport) and rport != str(self.local[1]))


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a.lower() == b.lower()


def observe(outcome: Transaction[sipmsg.Response], sent: Sent, provisional: list[int],
            transport: Transport) -> Observation:
    evidence = outcome.evidence()
    if provisional:
        evidence["provisional"] = provisional
    response = outcome.reply
    if response is not None or provisional:
        if response is None or response.status < 200:
            evidence["final"] = None  # a provisional answer already proves a SIP server
            return Observation.ok(**evidence)
        rewritten = sent.rewrites(response)
        server = response.get("server") or response.get("user-agent")
        evidence.update(status_code=response.status, reason=scrub(response.reason)[:60],
                        alg_detected=bool(rewritten), rewritten=rewritten,
                        nat=sent.nat(response))
        if server:
            evidence["server"] = scrub(server)[:80]
        return Observation.ok(**evidence)
    return unanswered(outcome, evidence, transport, Operation.SIP_REQUEST,
                      Operation.SIP_RESPONSE)
