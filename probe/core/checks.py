"""The checks, as data: one row per check, and every list of check names
(the record's `endpoint.check`, the catalogue's, `--skip`, the test helper's,
the runner's exclusive and not-repeated sets) derives from this table.

Adding a check: a row here, a module with `NAME`, `VERSION`, `DEFAULT_TIMEOUT`
and `async def run(endpoint, ctx) -> Observation` (docs/checks.md), an
endpoint model in probe/catalogue.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CheckName(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    STUN = "stun"
    TURN = "turn"
    SIP = "sip"
    WEBRTC = "webrtc"
    THROTTLE = "throttle"


@dataclass(frozen=True)
class CheckSpec:
    name: CheckName
    module: str  # imported on first use: a run without webrtc never loads aiortc
    # bandwidth-heavy: runs alone, after every other check (one measurement
    # must not disturb another)
    exclusive: bool = False
    # a `blocked` is said only after a second run of the check; not for the
    # checks that repeat themselves (throttle's confirmation round). A whole
    # call is run twice too: once, its SCTP stage timed out under 3 % random
    # loss (lab scenario throttle-loss-equal), a false `blocked`
    repeated: bool = True
    # the test helper runs it from the control vantage point; the others carry
    # their own control (webrtc's reference peer, throttle's inverted flow)
    helper: bool = True
    # takes seconds whatever the network does (a whole call): started first, so
    # that the pass ends sooner
    long: bool = False


REGISTRY: tuple[CheckSpec, ...] = (
    CheckSpec(CheckName.DNS, "probe.checks.dns"),
    CheckSpec(CheckName.TCP, "probe.checks.tcp"),
    CheckSpec(CheckName.TLS, "probe.checks.tls"),
    CheckSpec(CheckName.STUN, "probe.checks.stun"),
    CheckSpec(CheckName.TURN, "probe.checks.turn"),
    CheckSpec(CheckName.SIP, "probe.checks.sip"),
    CheckSpec(CheckName.WEBRTC, "probe.checks.webrtc.check", helper=False, long=True),
    CheckSpec(CheckName.THROTTLE, "probe.checks.throttle.check", exclusive=True,
              repeated=False, helper=False),
)

SPECS: dict[str, CheckSpec] = {str(spec.name): spec for spec in REGISTRY}
CHECK_NAMES: tuple[str, ...] = tuple(SPECS)
EXCLUSIVE = frozenset(name for name, spec in SPECS.items() if spec.exclusive)
NOT_REPEATED = frozenset(name for name, spec in SPECS.items() if not spec.repeated)
LONG = frozenset(name for name, spec in SPECS.items() if spec.long)
HELPER_CHECKS = frozenset(name for name, spec in SPECS.items() if spec.helper)


def spec(name: str) -> CheckSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise LookupError(f"unknown check {name!r}") from None
