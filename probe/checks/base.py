"""The uniform check interface.

Each check is a module in this package with `NAME`, `VERSION`,
`DEFAULT_TIMEOUT` and `async def run(endpoint, ctx) -> Observation`. A check
records what it saw; it never decides the verdict (see probe.verdict.classify).
`run` raises only when it could not run at all; network failures are results.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from probe.core.failures import Failure
from probe.core.record import Blocking


class Status(StrEnum):
    OK = "ok"  # the endpoint behaved as a working one does
    FAILED = "failed"  # it did not: `failure` says what was seen, `blocking` how, if recognisable
    DEGRADED = "degraded"  # it worked, but worse than its control (throttling)
    UNMEASURABLE = "unmeasurable"  # the check could not measure (budget, local error)


class ControlState(StrEnum):
    OK = "ok"  # the control vantage point reached the endpoint
    FAILED = "failed"  # it did not: the endpoint is down, not blocked
    ABSENT = "absent"  # no control answer for this endpoint


class Observation(BaseModel):
    status: Status
    failure: Failure | None = None
    blocking: Blocking | None = None
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
    def failed(cls, failure: Failure, blocking: Blocking | None, **evidence: Any) -> Observation:
        return cls(status=Status.FAILED, failure=failure, blocking=blocking, evidence=evidence)


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


def default_ssl_context() -> ssl.SSLContext:
    """System trust store; `SSL_CERT_FILE` replaces it, as in OpenSSL."""
    return ssl.create_default_context()


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
