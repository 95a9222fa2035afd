"""The verdict table, case by case. The property that matters most: nothing is
`blocked` unless the control worked (or the failure proves itself)."""

from __future__ import annotations

import itertools

import pytest

from probe.checks.base import ControlState as C
from probe.checks.base import Status as S
from probe.core.record import Blocking as B
from probe.core.record import Verdict as V
from probe.verdict.classify import Situation, classify

CASES = [
    # status, blocking, control, connectivity, resolver_works -> verdict, blocking, rule
    (S.OK, None, C.OK, True, True, V.OPEN, None, "works"),
    (S.OK, None, C.FAILED, True, True, V.OPEN, None, "works"),
    (S.OK, None, C.ABSENT, True, True, V.OPEN, None, "works"),
    # a success needs neither a control nor a pre-check (the collector may be blocked)
    (S.OK, None, C.ABSENT, False, True, V.OPEN, None, "works"),
    (S.FAILED, B.TCP_RESET, C.OK, True, True, V.BLOCKED, B.TCP_RESET, "fails_where_control_works"),
    (S.FAILED, B.STUN_NO_RESPONSE, C.OK, True, True, V.BLOCKED, B.STUN_NO_RESPONSE,
     "fails_where_control_works"),
    (S.FAILED, B.TCP_TIMEOUT, C.FAILED, True, True, V.INCONCLUSIVE, None, "control_fails_too"),
    (S.FAILED, B.TCP_TIMEOUT, C.ABSENT, True, True, V.INCONCLUSIVE, None, "no_control"),
    (S.FAILED, B.DNS_BOGON, C.ABSENT, True, True, V.BLOCKED, B.DNS_BOGON, "self_evident"),
    (S.FAILED, B.DNS_BOGON, C.FAILED, True, True, V.INCONCLUSIVE, None, "control_fails_too"),
    (S.FAILED, B.TCP_RESET, C.OK, False, True, V.INCONCLUSIVE, None, "no_connectivity"),
    (S.FAILED, B.DNS_BOGON, C.ABSENT, False, True, V.INCONCLUSIVE, None, "no_connectivity"),
    (S.FAILED, None, C.OK, True, True, V.INCONCLUSIVE, None, "unrecognised_failure"),
    (S.FAILED, B.DNS_TIMEOUT, C.OK, True, False, V.INCONCLUSIVE, None, "resolver_broken"),
    (S.FAILED, B.DNS_TIMEOUT, C.OK, True, True, V.BLOCKED, B.DNS_TIMEOUT,
     "fails_where_control_works"),
    (S.FAILED, B.DNS_NXDOMAIN, C.OK, True, False, V.BLOCKED, B.DNS_NXDOMAIN,
     "fails_where_control_works"),
    (S.DEGRADED, B.THROTTLE_RATE, C.OK, True, True, V.THROTTLED, B.THROTTLE_RATE,
     "degraded_where_control_is_not"),
    (S.DEGRADED, B.THROTTLE_LOSS, C.FAILED, True, True, V.INCONCLUSIVE, None,
     "degraded_without_control"),
    (S.DEGRADED, B.THROTTLE_RATE, C.OK, False, True, V.INCONCLUSIVE, None, "no_connectivity"),
    (S.UNMEASURABLE, None, C.OK, True, True, V.INCONCLUSIVE, None, "unmeasurable"),
    (S.UNMEASURABLE, B.TCP_RESET, C.OK, True, True, V.INCONCLUSIVE, None, "unmeasurable"),
]


@pytest.mark.parametrize("status,blocking,control,connectivity,resolver,verdict,method,rule", CASES)
def test_table(status: S, blocking: B | None, control: C, connectivity: bool, resolver: bool,
               verdict: V, method: B | None, rule: str) -> None:
    result = classify(Situation(status, blocking, control, connectivity, resolver))
    assert (result.verdict, result.blocking, result.rule) == (verdict, method, rule)


def test_never_blocked_without_a_working_control_or_self_evident_proof() -> None:
    for status, blocking, control, connectivity, resolver in itertools.product(
        S, [None, *B], C, [True, False], [True, False]
    ):
        result = classify(Situation(status, blocking, control, connectivity, resolver))
        if result.verdict is V.BLOCKED:
            assert connectivity and status is S.FAILED and blocking is not None
            assert control is C.OK or (control is C.ABSENT and blocking is B.DNS_BOGON)
        if result.verdict in (V.BLOCKED, V.THROTTLED):
            assert result.blocking is blocking
        else:
            assert result.blocking is None
