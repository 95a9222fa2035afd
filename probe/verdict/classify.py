"""From observations to verdicts: the one place where `blocked` is decided.

What an observation can mean at most, its suspected blocking method, comes
from the table of probe/verdict/methods.py. Then an ordered table of rules;
the first that matches gives the verdict, and its name goes into the
record's evidence so every verdict can be traced. The rule
that matters most: a failure is `blocked` only when the control reached the
same endpoint (or the observation proves interference by itself); a failure
the control shares is an outage, hence `inconclusive`. A success needs no
control, nor a pre-check: an endpoint that worked is `open` whatever else
failed (censors block the collector too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from probe.checks.base import ControlState, Status
from probe.core.record import Blocking, Verdict

# Failures that prove interference without a control: a public name answered
# with a private or reserved address is a lie whatever the control says.
SELF_EVIDENT = frozenset({Blocking.DNS_BOGON})

# Failures of the local resolver itself: without a working lookup elsewhere
# in the same run they describe a broken resolver, not a censored name.
RESOLVER_HEALTH = frozenset({Blocking.DNS_TIMEOUT, Blocking.DNS_SERVFAIL, Blocking.DNS_REFUSED})


@dataclass(frozen=True)
class Situation:
    status: Status
    suspected: Blocking | None  # the method the observation suggests (probe.verdict.methods)
    control: ControlState
    connectivity: bool = True
    resolver_works: bool = True


@dataclass(frozen=True)
class Rule:
    name: str
    matches: Callable[[Situation], bool]
    verdict: Verdict


RULES: tuple[Rule, ...] = (
    Rule("unmeasurable", lambda s: s.status is Status.UNMEASURABLE, Verdict.INCONCLUSIVE),
    Rule("works", lambda s: s.status is Status.OK, Verdict.OPEN),
    Rule("no_connectivity", lambda s: not s.connectivity, Verdict.INCONCLUSIVE),
    Rule("degraded_where_control_is_not",
         lambda s: s.status is Status.DEGRADED and s.control is ControlState.OK
         and s.suspected is not None, Verdict.THROTTLED),
    Rule("degraded_without_control", lambda s: s.status is Status.DEGRADED, Verdict.INCONCLUSIVE),
    Rule("unrecognised_failure", lambda s: s.suspected is None, Verdict.INCONCLUSIVE),
    Rule("resolver_broken",
         lambda s: s.suspected in RESOLVER_HEALTH and not s.resolver_works, Verdict.INCONCLUSIVE),
    Rule("control_fails_too", lambda s: s.control is ControlState.FAILED, Verdict.INCONCLUSIVE),
    Rule("fails_where_control_works", lambda s: s.control is ControlState.OK, Verdict.BLOCKED),
    Rule("self_evident", lambda s: s.suspected in SELF_EVIDENT, Verdict.BLOCKED),
    Rule("no_control", lambda s: True, Verdict.INCONCLUSIVE),
)


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    blocking: Blocking | None
    rule: str


def classify(situation: Situation) -> Classification:
    for rule in RULES:
        if rule.matches(situation):
            keeps_method = rule.verdict in (Verdict.BLOCKED, Verdict.THROTTLED)
            return Classification(rule.verdict, situation.suspected if keeps_method else None,
                                  rule.name)
    raise AssertionError("the last rule matches everything")
