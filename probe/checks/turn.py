"""`turn`: an allocation on a TURN server over UDP, TCP or TLS (RFC 8656).

Without credentials, an Allocate answered by 401 with REALM and NONCE
(RFC 8489 §9.2.4) proves that a real TURN server answers. With credentials it
goes on: the authenticated Allocate (long-term credential MESSAGE-INTEGRITY,
verified on every success response), CreatePermission, and when the catalogue
names a UDP echo `peer`, data through the relay and back (a Send indication,
then ChannelBind and ChannelData), and finally a Refresh with LIFETIME 0 that
frees the allocation. Each step's time, attempts and error code go into evidence.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aioice.stun import Class, Message, Method
from aioice.turn import UDP_TRANSPORT

from probe.checks.base import Context, Observation, Operation, carried
from probe.checks.results import finish, flow_operation, open_flow, resolve, resolve_name
from probe.checks.stun import address_kind, implausible_mapping, mapped_evidence
from probe.core.errors import BadCookie, Mismatch, ResolveError, StepFailed
from probe.core.failures import Failure, scrub
from probe.net.flow import Flow, Transaction, answer_deadline, exchange
from probe.wire import stun as stunmsg

NAME = "turn"
VERSION = "1"
DEFAULT_TIMEOUT = 5.0
REFRESH_GRACE = 1.0  # seconds allowed to free the allocation once the deadline has passed

Address = tuple[str, int]


def parse_peer(text: str) -> Address:
    """`host:port` or `[v6]:port` (the catalogue checks the form when it loads)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def run(endpoint: Any, ctx: Context) -> Observation:
    address, failed = await resolve(endpoint, ctx)
    if failed:
        return failed
    assert address is not None
    peer: Address | None = None
    if endpoint.peer and endpoint.username:
        host, port = parse_peer(endpoint.peer)
        try:
            peer = (await resolve_name(host, ctx), port)
        except ResolveError as exc:  # our own echo peer: nothing said about the TURN server
            return Observation.failed(exc.failure, Operation.RESOLVE, phase="peer",
                                      error=str(exc))
    # an authenticated run has more round trips: it may take up to twice the timeout
    deadline = time.monotonic() + ctx.timeout * (2 if endpoint.username else 1)
    channels: set[int] = set()
    try:
        flow = await open_flow(address, endpoint.port, endpoint.transport, ctx,
                               sni=endpoint.sni or endpoint.host, deadline=deadline,
                               framer=functools.partial(stunmsg.frame_length, channels=channels))
    except StepFailed as exc:
        return carried(exc)
    session = Session(flow, ctx.timeout, deadline, channels)
    try:
        try:
            observation = await session.run(endpoint.username, endpoint.password or "", peer)
        except StepFailed as exc:
            observation = carried(exc)
        await session.release()
    finally:
        flow.close()
    observation.evidence.update(session.evidence())
    return finish(flow, observation)


@dataclass
class Session:
    """One client's allocation, step by step (RFC 8656 §7-12)."""

    flow: Flow
    step_timeout: float
    deadline: float
    channels: set[int]  # bound channels: ChannelData on any other is not from our server
    steps: list[dict[str, Any]] = field(default_factory=list)
    sent_ids: set[bytes] = field(default_factory=set)
    anomalies: list[dict[str, str]] = field(default_factory=list)
    anomaly_count: int = 0
    username: str | None = None
    realm: str = ""
    nonce: bytes = b""
    key: bytes | None = None
    allocated: bool = False
    server: dict[str, Any] = field(default_factory=dict)

    async def run(self, username: str | None, password: str, peer: Address | None) -> Observation:
        reply = await self.transact("allocate", self.allocate_request())
        if reply.message_class == Class.ERROR:
            if reply.error_code != 401:
                raise StepFailed(self.error_response("allocate", reply))
            realm, nonce = reply.attributes.get("REALM"), reply.attributes.get("NONCE")
            if not realm or not nonce:
                raise StepFailed(Observation.failed(
                    Failure.UNEXPECTED_RESPONSE, Operation.TURN_RESPONSE, phase="allocate",
                    error="401 without REALM and NONCE (RFC 8489 §9.2.4)"))
            self.realm, self.nonce = realm, nonce
            if username is None:
                return Observation.ok(auth="challenge", realm=scrub(realm)[:100])
            self.username, self.key = username, stunmsg.long_term_key(username, realm, password)
            reply = await self.transact("allocate_auth", self.allocate_request())
            if reply.message_class == Class.ERROR:
                raise StepFailed(self.error_response("allocate_auth", reply))
            auth = "long_term"
        else:
            auth = "none"  # an open relay: allocated without credentials
        self.allocated = True
        mapped, facts = self.allocation(reply)
        facts["auth"] = auth
        if username is None:
            return Observation.ok(**facts)

        # ICE asks permission for the remote peer; without one, for our own
        # reflexive address, which every server accepts
        permission = Message(Method.CREATE_PERMISSION, Class.REQUEST,
                             attributes={"XOR-PEER-ADDRESS": peer or mapped})
        reply = await self.transact("permission", permission)
        if reply.message_class == Class.ERROR:
            raise StepFailed(self.error_response("permission", reply))
        if peer is not None:
            facts["relay"] = await self.relay(peer)
        return Observation.ok(**facts)

    @staticmethod
    def allocate_request() -> Message:
        return Message(Method.ALLOCATE, Class.REQUEST,
                       attributes={"REQUESTED-TRANSPORT": UDP_TRANSPORT})

    def allocation(self, reply: Message) -> tuple[Address, dict[str, Any]]:
        """Check a success response to Allocate (RFC 8656 §7.3): our mapped
        address (kept out of evidence) and the facts to keep."""
        missing = [a for a in ("XOR-RELAYED-ADDRESS", "XOR-MAPPED-ADDRESS", "LIFETIME")
                   if a not in reply.attributes]
        if missing:
            raise StepFailed(Observation.failed(
                Failure.PROTOCOL_ERROR, Operation.TURN_RESPONSE, phase="allocate",
                error=f"Allocate success without {', '.join(missing)}"))
        mapped = reply.attributes["XOR-MAPPED-ADDRESS"]
        relayed = ipaddress.ip_address(reply.attributes["XOR-RELAYED-ADDRESS"][0])
        problem = implausible_mapping(mapped, self.flow.local, self.flow.address)
        if problem:
            raise StepFailed(Observation.failed(Failure.FORGED_RESPONSE, Operation.TURN_RESPONSE,
                                                phase="allocate", implausible=problem))
        return mapped, {
            "mapped": mapped_evidence(mapped, self.flow.local),
            "lifetime": reply.attributes["LIFETIME"],
            "relayed": {"kind": address_kind(relayed), "family": relayed.version,
                        "same_as_server": relayed == ipaddress.ip_address(self.flow.address)},
        }

    async def relay(self, peer: Address) -> dict[str, Any]:
        """Data to the echo peer and back through the relay: a Send indication
        answered by a Data indication (RFC 8656 §11), then a channel (§12)."""
        token = os.urandom(12)
        send = Message(Method.SEND, Class.INDICATION,
                       attributes={"XOR-PEER-ADDRESS": peer, "DATA": token})
        await self.step("send", bytes(send), functools.partial(self.match_data, peer, token),
                        relay=True)
        send_ms = self.steps[-1]["ms"]
        channel = random.randint(stunmsg.CHANNEL_MIN, stunmsg.CHANNEL_MAX)
        self.channels.add(channel)  # the peer's echo may follow right on the bind's success
        bind = Message(Method.CHANNEL_BIND, Class.REQUEST,
                       attributes={"CHANNEL-NUMBER": channel, "XOR-PEER-ADDRESS": peer})
        reply = await self.transact("channel_bind", bind)
        if reply.message_class == Class.ERROR:
            raise StepFailed(self.error_response("channel_bind", reply))
        echo = os.urandom(12)
        data = stunmsg.channel_data(channel, echo, pad=not self.flow.datagram)
        await self.step("channel_data", data,
                        functools.partial(self.match_channel, channel, echo, token), relay=True)
        return {"send_ms": send_ms, "channel_ms": self.steps[-1]["ms"]}

    async def release(self) -> None:
        """Refresh with LIFETIME 0 (RFC 8656 §7.5): free the allocation, whatever happened."""
        if not self.allocated:
            return
        self.deadline = max(self.deadline, time.monotonic() + REFRESH_GRACE)
        refresh = Message(Method.REFRESH, Class.REQUEST, attributes={"LIFETIME": 0})
        with contextlib.suppress(StepFailed):  # recorded in the steps; it expires anyway
            await self.transact("refresh", refresh)

    # --- transactions -------------------------------------------------------------

    def _sign(self, request: Message) -> Message:
        if self.key is not None:
            request.attributes.update({"USERNAME": self.username, "REALM": self.realm,
                                       "NONCE": self.nonce})
            request.add_message_integrity(self.key)  # adds FINGERPRINT too
        self.sent_ids.add(request.transaction_id)
        return request

    async def transact(self, step: str, request: Message) -> Message:
        """One request/response transaction: the response, or StepFailed."""
        reply: Message = await self.step(step, bytes(self._sign(request)),
                                         functools.partial(self.match_response, request))
        if reply.message_class == Class.ERROR and reply.error_code == 438 and self.key:
            # stale nonce (RFC 8489 §9.2.5): once more with the new one
            self.nonce = reply.attributes.get("NONCE", self.nonce)
            retry = Message(request.message_method, Class.REQUEST, attributes={
                k: v for k, v in request.attributes.items()
                if k not in ("USERNAME", "REALM", "NONCE", "MESSAGE-INTEGRITY", "FINGERPRINT")})
            reply = await self.step(step, bytes(self._sign(retry)),
                                    functools.partial(self.match_response, retry))
        if self.key is not None and reply.message_class == Class.RESPONSE \
                and not reply.check_message_integrity(self.key):
            raise StepFailed(Observation.failed(
                Failure.FORGED_RESPONSE, Operation.TURN_RESPONSE, phase=step,
                error="success response without a valid MESSAGE-INTEGRITY (RFC 8489 §9.2.5)"))
        return reply

    async def step(self, name: str, data: bytes, match: Any, relay: bool = False) -> Any:
        deadline = answer_deadline(min(self.deadline, time.monotonic() + self.step_timeout),
                                   self.step_timeout)
        # relayed data is resent on every transport: the peer leg is UDP
        outcome: Transaction[Any] = await exchange(self.flow, data, match, deadline,
                                               resend=True if relay else None)
        record: dict[str, Any] = {"step": name, "attempts": len(outcome.attempts),
                                  "ms": outcome.evidence().get("rtt_ms", outcome.elapsed_ms),
                                  "result": "ok" if outcome.reply is not None else outcome.ended}
        self.steps.append(record)
        self.anomaly_count += outcome.anomaly_count
        self.anomalies.extend(outcome.anomalies[:max(5 - len(self.anomalies), 0)])
        if outcome.reply is None:
            raise StepFailed(self.no_reply(name, outcome, relay))
        if isinstance(outcome.reply, Message):
            if outcome.reply.message_class == Class.ERROR:
                record.update(result="error", error_code=outcome.reply.error_code)
            software = outcome.reply.attributes.get("SOFTWARE")
            if software and "software" not in self.server:
                self.server["software"] = scrub(str(software))[:80]
            self.server.setdefault("fingerprint", "FINGERPRINT" in outcome.reply.attributes)
        return outcome.reply

    def no_reply(self, step: str, outcome: Transaction[Any], relay: bool) -> Observation:
        evidence: dict[str, Any] = {"phase": step}
        if outcome.closed is not None:
            evidence["error"] = outcome.closed.detail
            if outcome.closed.icmp:
                evidence["icmp"] = outcome.closed.icmp.as_evidence()
            return Observation.failed(outcome.closed.failure,
                                      flow_operation(self.flow.transport), **evidence)
        if outcome.anomaly_count:
            failure = Failure.FORGED_RESPONSE if outcome.forged else Failure.PROTOCOL_ERROR
            return Observation.failed(failure, Operation.TURN_RESPONSE, **evidence)
        operation = Operation.TURN_RELAY if relay else Operation.TURN_REQUEST
        return Observation.failed(Failure.GENERIC_TIMEOUT, operation, **evidence)

    @staticmethod
    def error_response(step: str, reply: Message) -> Observation:
        """A TURN error where success was needed: a refusal (credentials, quota,
        permission), not a recognisable sign of interference."""
        code, reason = reply.attributes.get("ERROR-CODE", (None, ""))
        return Observation.failed(Failure.ERROR_RESPONSE, Operation.TURN_RESPONSE, phase=step,
                                  error_code=code,
                                  reason=scrub(reason)[:120])

    # --- what comes back ------------------------------------------------------------

    def _parse(self, data: bytes) -> Message | None:
        """A STUN message; None for ChannelData on a channel we bound."""
        if stunmsg.is_channel_data(data):
            if stunmsg.parse_channel_data(data)[0] not in self.channels:
                raise Mismatch("ChannelData on a channel we never bound")
            return None
        try:
            return stunmsg.parse(data)
        except BadCookie as exc:
            raise Mismatch(str(exc)) from exc

    def _not_ours(self, message: Message) -> None:
        """Ignore late answers to our earlier requests and indications; anything
        else with a transaction id we never sent is a forgery."""
        if message.transaction_id in self.sent_ids or message.message_class == Class.INDICATION:
            return
        raise Mismatch("STUN response with a transaction id we never sent")

    def match_response(self, request: Message, data: bytes) -> tuple[Message, None] | None:
        message = self._parse(data)
        if message is None:
            return None
        if message.transaction_id != request.transaction_id:
            self._not_ours(message)
            return None
        if message.message_class not in (Class.RESPONSE, Class.ERROR) \
                or message.message_method != request.message_method:
            raise Mismatch(f"{message.message_method.name.lower()} "
                           f"{message.message_class.name.lower()} with our transaction id")
        return message, None

    def match_data(self, peer: Address, token: bytes, data: bytes) -> tuple[bool, None] | None:
        message = self._parse(data)
        if message is None:
            return None
        if message.message_method == Method.DATA and message.message_class == Class.INDICATION \
                and message.attributes.get("DATA") == token \
                and message.attributes.get("XOR-PEER-ADDRESS", ("", 0))[0] == peer[0]:
            return True, None
        self._not_ours(message)
        return None

    def match_channel(self, channel: int, token: bytes, earlier: bytes,
                      data: bytes) -> tuple[bool, None] | None:
        if not stunmsg.is_channel_data(data):
            message = self._parse(data)
            if message is not None:
                self._not_ours(message)
            return None
        number, payload = stunmsg.parse_channel_data(data)
        if number not in self.channels:
            raise Mismatch("ChannelData on a channel we never bound")
        if number == channel and payload == token:
            return True, None
        if payload == earlier:
            return None  # a late echo of the Send indication's data
        raise Mismatch("ChannelData that is not our echo")

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": self.steps, **self.server}
        if self.anomaly_count:
            out.update(anomalies=self.anomalies, anomaly_count=self.anomaly_count)
        return out
