"""Which observations can ever lead to `blocked` (or `throttled`), and as what.

One table: an operation that failed (probe.checks.base.Operation) and the
failure seen there (probe.core.failures.Failure) give the blocking method the
observation suggests, its `suspected` method (docs/measurement.md). Anything
not in the table suggests none, so it can never be `blocked`: at worst
`inconclusive`. Whether a suggestion becomes the verdict is classify's to say
(the control, the connectivity, the resolver's health).
"""

from __future__ import annotations

from probe.checks.base import Observation, Operation, Status
from probe.core.failures import CERT_FAILURES, ICMP_FAILURES, Failure
from probe.core.record import Blocking

Op = Operation
F = Failure
TIMEOUT = frozenset({F.GENERIC_TIMEOUT})
RESET = frozenset({F.CONNECTION_RESET})
FORGED = frozenset({F.FORGED_RESPONSE, F.PROTOCOL_ERROR, F.UNEXPECTED_RESPONSE})

# (operation, failures seen there, the blocking method they suggest); an
# operation absent here (resolve, socket, webrtc_signalling) suggests nothing
METHODS: tuple[tuple[Operation, frozenset[Failure | None], Blocking], ...] = (
    (Op.DNS_QUERY, frozenset({F.DNS_NXDOMAIN}), Blocking.DNS_NXDOMAIN),
    (Op.DNS_QUERY, frozenset({F.DNS_SERVFAIL}), Blocking.DNS_SERVFAIL),
    (Op.DNS_QUERY, frozenset({F.DNS_REFUSED}), Blocking.DNS_REFUSED),
    (Op.DNS_QUERY, TIMEOUT, Blocking.DNS_TIMEOUT),
    (Op.DNS_ANSWER, frozenset({F.DNS_NO_ANSWER}), Blocking.DNS_EMPTY),
    (Op.DNS_ANSWER, frozenset({F.DNS_BOGON}), Blocking.DNS_BOGON),
    (Op.DNS_ANSWER, frozenset({F.DNS_MISMATCH}), Blocking.DNS_MISMATCH),
    (Op.TCP_CONNECT, RESET, Blocking.TCP_RESET),  # a RST answering our SYN
    (Op.TCP_CONNECT, TIMEOUT, Blocking.TCP_TIMEOUT),
    (Op.TCP_CONNECT, ICMP_FAILURES, Blocking.ICMP_UNREACHABLE),
    (Op.TLS_HANDSHAKE, CERT_FAILURES, Blocking.TLS_INVALID_CERT),
    (Op.TLS_HANDSHAKE, RESET, Blocking.TLS_RESET),
    (Op.TLS_HANDSHAKE, TIMEOUT, Blocking.TLS_TIMEOUT),
    (Op.TLS_HANDSHAKE, frozenset({F.EOF, F.SSL_FAILED_HANDSHAKE}), Blocking.TLS_FAILURE),
    (Op.TLS_HANDSHAKE, ICMP_FAILURES, Blocking.ICMP_UNREACHABLE),
    (Op.TLS_AFTER_HANDSHAKE, RESET, Blocking.TLS_RESET),
    (Op.UDP_FLOW, ICMP_FAILURES, Blocking.ICMP_UNREACHABLE),
    (Op.UDP_FLOW, RESET, Blocking.TCP_RESET),  # as any non-TLS flow (never seen on Linux)
    (Op.TCP_FLOW, ICMP_FAILURES, Blocking.ICMP_UNREACHABLE),
    (Op.TCP_FLOW, RESET, Blocking.TCP_RESET),
    (Op.TLS_FLOW, ICMP_FAILURES, Blocking.ICMP_UNREACHABLE),
    (Op.TLS_FLOW, RESET, Blocking.TLS_RESET),
    (Op.STUN_REQUEST, TIMEOUT, Blocking.STUN_NO_RESPONSE),
    (Op.STUN_RESPONSE, FORGED, Blocking.STUN_FORGED),
    (Op.TURN_REQUEST, TIMEOUT, Blocking.TURN_NO_RESPONSE),
    (Op.TURN_RESPONSE, FORGED, Blocking.TURN_FORGED),  # not error_response: a refusal
    (Op.TURN_RELAY, TIMEOUT, Blocking.TURN_RELAY),
    (Op.SIP_REQUEST, TIMEOUT, Blocking.SIP_NO_RESPONSE),
    (Op.SIP_RESPONSE, FORGED, Blocking.SIP_FORGED),
    (Op.WEBRTC_GATHERING, frozenset({F.GENERIC_TIMEOUT, F.ICE_NO_CANDIDATES}),
     Blocking.WEBRTC_ICE),
    (Op.WEBRTC_ICE, frozenset({F.GENERIC_TIMEOUT, F.ICE_FAILED}), Blocking.WEBRTC_ICE),
    (Op.WEBRTC_DTLS, frozenset({F.GENERIC_TIMEOUT, F.DTLS_FAILED}), Blocking.WEBRTC_DTLS),
    (Op.WEBRTC_SCTP, TIMEOUT, Blocking.WEBRTC_SCTP),
    (Op.WEBRTC_ECHO, TIMEOUT, Blocking.WEBRTC_SCTP),
    (Op.WEBRTC_MEDIA, frozenset({F.GENERIC_TIMEOUT, F.MEDIA_INTERRUPTED}),
     Blocking.WEBRTC_MEDIA),  # no audio at all, or audio cut after the call set up
    (Op.THROTTLE_RATE, frozenset({None}), Blocking.THROTTLE_RATE),
    (Op.THROTTLE_LOSS, frozenset({None}), Blocking.THROTTLE_LOSS),
    (Op.THROTTLE_REPLAY, TIMEOUT, Blocking.UDP_TIMEOUT),
)

_LOOKUP: dict[tuple[Operation, Failure | None], Blocking] = {}
for _operation, _failures, _method in METHODS:
    for _failure in _failures:
        _LOOKUP.setdefault((_operation, _failure), _method)


def suspected(observation: Observation) -> Blocking | None:
    """The blocking method `observation` suggests, or None. Only what failed
    (or worked worse than its control) suggests one."""
    if observation.status not in (Status.FAILED, Status.DEGRADED) or observation.operation is None:
        return None
    return _LOOKUP.get((observation.operation, observation.failure))
