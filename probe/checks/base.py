"""The uniform check interface.

Each check is a module in this package with `NAME`, `VERSION`,
`DEFAULT_TIMEOUT` and `async def run(endpoint, ctx) -> Observation` (its
properties: probe.core.checks). A check records what it saw: the failure and
the operation it happened in; whether that can mean blocking, and how, is the
verdict layer's to say (probe.verdict). `run` raises only when it could not
run at all; network failures are results.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from probe.core.errors import StepFailed
from probe.core.failures import Failure


class Status(StrEnum):
    OK = "ok"  # the endpoint behaved as a working one does
    FAILED = "failed"  # it did not: `failure` says what was seen, `operation` where
    DEGRADED = "degraded"  # it worked, but worse than its control (throttling)
    UNMEASURABLE = "unmeasurable"  # the check could not measure (budget, local error)


class ControlState(StrEnum):
    OK = "ok"  # the control vantage point reached the endpoint
    FAILED = "failed"  # it did not: the endpoint is down, not blocked
    ABSENT = "absent"  # no control answer for this endpoint


class Operation(StrEnum):
    """Where a failure was observed, before any judgement (as OONI's
    `failed_operation`): the verdict layer's input (probe/verdict/methods.py).
    Never written into a record, whose `evidence.phase` says it in words."""

    RESOLVE = "resolve"  # a name the check needs (judging names is the dns check's)
    SOCKET = "socket"  # no local socket: no route, no permission; a local matter
    # a lookup: the dns check's, or a check's own lookup of its host where the
    # control resolved the name (probe.run.names): an rcode, or no answer in time
    DNS_QUERY = "dns_query"
    DNS_ANSWER = "dns_answer"  # what the answer says: empty, bogon, a lie
    TCP_CONNECT = "tcp_connect"
    TLS_HANDSHAKE = "tls_handshake"
    TLS_AFTER_HANDSHAKE = "tls_after_handshake"  # killed right after a finished handshake
    UDP_FLOW = "udp_flow"  # an open flow ended under us mid-exchange: ICMP, reset, EOF
    TCP_FLOW = "tcp_flow"
    TLS_FLOW = "tls_flow"
    STUN_REQUEST = "stun_request"  # requests sent, no answer in time
    STUN_RESPONSE = "stun_response"  # answers came, none a real server sends
    TURN_REQUEST = "turn_request"
    TURN_RESPONSE = "turn_response"  # forged or garbled; an error code is a refusal
    TURN_RELAY = "turn_relay"  # data through the relay did not come back
    SIP_REQUEST = "sip_request"
    SIP_RESPONSE = "sip_response"
    WEBRTC_GATHERING = "webrtc_gathering"  # no candidates from the ICE servers
    WEBRTC_SIGNALLING = "webrtc_signalling"  # the reference peer's answer: not the path's
    WEBRTC_ICE = "webrtc_ice"
    WEBRTC_DTLS = "webrtc_dtls"
    WEBRTC_SCTP = "webrtc_sctp"
    WEBRTC_ECHO = "webrtc_echo"  # data channel open, the messages never came back
    WEBRTC_MEDIA = "webrtc_media"
    THROTTLE_RATE = "throttle_rate"  # the VoIP flow got less goodput than its inverted twin
    THROTTLE_LOSS = "throttle_loss"  # ... lost more
    THROTTLE_REPLAY = "throttle_replay"  # nothing of the VoIP flow came back, the twin's did


class Observation(BaseModel):
    status: Status
    failure: Failure | None = None
    operation: Operation | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    # Checks that carry their own control (throttle's inverted flow, webrtc's
    # reference peer) set this; for the others the runner asks the test helper.
    control: ControlState | None = None

    @classmethod
    def ok(cls, **evidence: Any) -> Observation:
        return cls(status=Status.OK, evidence=evidence)

    @classmethod
    def failed(cls, failure: Failure, operation: Operation | None,
               **evidence: Any) -> Observation:
        return cls(status=Status.FAILED, failure=failure, operation=operation, evidence=evidence)


def carried(exc: StepFailed[Any]) -> Observation:
    """The observation a StepFailed carries (the core names no Observation type)."""
    observation = exc.observation
    assert isinstance(observation, Observation)
    return observation


class Budget:
    """Bytes a run may spend (`--budget-mb`); checks charge what they send and receive."""

    def __init__(self, limit_bytes: int | None) -> None:
        self.limit = limit_bytes
        self.used = 0

    def charge(self, nbytes: int) -> None:
        self.used += nbytes

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    def exhausted(self) -> bool:
        return self.limit is not None and self.used >= self.limit


ControlLookup = Callable[[Any], Awaitable[Observation | None]]


async def _no_control(endpoint: Any) -> Observation | None:
    return None


_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def default_ssl_context() -> ssl.SSLContext:
    """System trust store; `SSL_CERT_FILE` (or `SSL_CERT_DIR`) replaces it, as in
    OpenSSL. One context per trust store, shared by every connection of the
    pass: each holds its own parsed copy of the store (about 0.8 MiB), and a
    context serves any number of connections."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _CONTEXTS.get(key)
    if context is None:
        context = _CONTEXTS[key] = ssl.create_default_context()
    return context


@dataclass
class Context:
    timeout: float = 5.0
    resolver: tuple[str, int] | None = None
    budget: Budget = field(default_factory=lambda: Budget(None))
    control: ControlLookup = _no_control
    ssl_context: Callable[[], ssl.SSLContext] = default_ssl_context
    # for checks that talk to the collector (webrtc offer, throttle reflector)
    collector: str | None = None
    signer: Any = None
    # the control vantage point runs the same checks with this set: no control of its own
    is_control: bool = False
    # The test helper's seam: every name or address the check would resolve or
    # connect to, mapped to the one address the helper vetted. When set, the
    # check connects to exactly these addresses and refuses any other target.
    pinned: Mapping[str, str] | None = None
    # The test helper's UDP caps: the largest datagram it sends, and how many
    # times a request goes out (retransmissions included). None: no cap.
    udp_max_payload: int | None = None
    max_sends: int | None = None
    # The test helper's filter of the addresses a `dns` answer may repeat (the
    # others are withheld: a probe must not map the collector's network)
    reveal: Callable[[str], bool] | None = None
