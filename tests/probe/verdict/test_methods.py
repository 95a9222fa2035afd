"""The one table from observed failure to blocking method: which observations
can ever lead to `blocked`. The reference functions below are the decisions
the checks used to make themselves; the table must give the same answer for
every failure of the vocabulary."""

from __future__ import annotations

import pytest

from probe.checks.base import Observation, Operation, Status
from probe.core.failures import CERT_FAILURES, ICMP_FAILURES, Failure
from probe.core.record import Blocking, Transport
from probe.verdict.methods import METHODS, suspected

ALL_FAILURES = [*Failure, None]


def failed(operation: Operation, failure: Failure | None) -> Observation:
    return Observation(status=Status.FAILED, failure=failure, operation=operation)


def old_tcp_blocking(failure: Failure | None) -> Blocking | None:
    if failure is Failure.CONNECTION_RESET:
        return Blocking.TCP_RESET
    if failure is Failure.GENERIC_TIMEOUT:
        return Blocking.TCP_TIMEOUT
    return Blocking.ICMP_UNREACHABLE if failure in ICMP_FAILURES else None


def old_closed_blocking(transport: Transport, failure: Failure | None) -> Blocking | None:
    if failure in ICMP_FAILURES:
        return Blocking.ICMP_UNREACHABLE
    if failure is Failure.CONNECTION_RESET:
        return Blocking.TLS_RESET if transport is Transport.TLS else Blocking.TCP_RESET
    return None


def old_handshake_blocking(failure: Failure | None) -> Blocking | None:
    if failure in CERT_FAILURES:
        return Blocking.TLS_INVALID_CERT
    if failure is Failure.CONNECTION_RESET:
        return Blocking.TLS_RESET
    if failure is Failure.GENERIC_TIMEOUT:
        return Blocking.TLS_TIMEOUT
    if failure in (Failure.EOF, Failure.SSL_FAILED_HANDSHAKE):
        return Blocking.TLS_FAILURE
    return Blocking.ICMP_UNREACHABLE if failure in ICMP_FAILURES else None


OLD_RCODE = {Failure.DNS_NXDOMAIN: Blocking.DNS_NXDOMAIN, Failure.DNS_SERVFAIL:
             Blocking.DNS_SERVFAIL, Failure.DNS_REFUSED: Blocking.DNS_REFUSED,
             Failure.GENERIC_TIMEOUT: Blocking.DNS_TIMEOUT}
FLOW = {Transport.UDP: Operation.UDP_FLOW, Transport.TCP: Operation.TCP_FLOW,
        Transport.TLS: Operation.TLS_FLOW}


@pytest.mark.parametrize("failure", ALL_FAILURES)
def test_the_table_makes_the_checks_old_decisions(failure: Failure | None) -> None:
    assert suspected(failed(Operation.TCP_CONNECT, failure)) == old_tcp_blocking(failure)
    assert suspected(failed(Operation.TLS_HANDSHAKE, failure)) == old_handshake_blocking(failure)
    for transport, operation in FLOW.items():
        assert suspected(failed(operation, failure)) == old_closed_blocking(transport, failure)
    old = None if failure is None else OLD_RCODE.get(failure)
    assert suspected(failed(Operation.DNS_QUERY, failure)) == old
    for operation in (Operation.RESOLVE, Operation.SOCKET, Operation.WEBRTC_SIGNALLING):
        assert suspected(failed(operation, failure)) is None


def test_no_ambiguous_rows_and_every_method_reachable() -> None:
    seen: dict[tuple[Operation, Failure | None], Blocking] = {}
    for operation, failures, method in METHODS:
        for failure in failures:
            assert (operation, failure) not in seen, (operation, failure)
            seen[(operation, failure)] = method
    assert set(seen.values()) == set(Blocking)


@pytest.mark.parametrize("status", [Status.OK, Status.UNMEASURABLE])
def test_only_failures_and_degradations_suggest_a_method(status: Status) -> None:
    for operation, failures, _ in METHODS:
        for failure in failures:
            observation = Observation(status=status, failure=failure, operation=operation)
            assert suspected(observation) is None


def test_throttling_and_an_observation_without_operation() -> None:
    degraded = Observation(status=Status.DEGRADED, operation=Operation.THROTTLE_LOSS)
    assert suspected(degraded) is Blocking.THROTTLE_LOSS
    assert suspected(Observation(status=Status.FAILED, failure=Failure.GENERIC_TIMEOUT)) is None
