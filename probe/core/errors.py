"""The exceptions of voipwatch, probe and collector: one tree, one root.

    VoipwatchError                      every exception raised on purpose
     +-- CommandError                   ends a command with one sentence and its exit status
     |    |                             (docs/cli.md has the table, the same for both commands)
     |    +-- InternalError     exit 1  something that is our fault or the machine's
     |    +-- UserError         exit 2  bad arguments, catalogue, config, key file, paths
     |    +-- VerificationFailed exit 3 a signature or a log proof that does not verify
     |    +-- Unreachable       exit 4  the collector or database could not be reached or
     |    |                             answered with an error; nothing was lost
     |    +-- FindingsFound     exit 5  `run --fail-on`: the pass completed and found them
     +-- StepFailed                     a check's step failed: carries the Observation the
     |                                  check returns (probe.checks.base.Observation)
     +-- Failed                         a network operation failed: `failure` (the closed
     |    |                             vocabulary, probe.core.failures) and `detail`
     |    +-- ConnectFailed             TCP connect: RST, timeout, ICMP (probe.net)
     |    +-- HandshakeFailed           TLS handshake after the connect (probe.net)
     |    +-- FlowClosed                an open flow ended under us: RST, ICMP, EOF (probe.net)
     |    +-- DnsError                  a DNS query: rcode, timeout (probe.dns)
     |    +-- ResolveError              a name a check needs did not resolve (probe.dns)
     |    +-- ReflectorUnavailable      the throttle reflector could not be used (probe.checks)
     +-- Unavailable                    a service the run can go on without
     |    +-- ControlUnavailable        the test helper (probe.run.control)
     |    +-- CollectorUnavailable      the collector, for an upload (probe.upload)
     |    +-- TooLarge                  the collector refused a batch as too large
     +-- SignatureError                 a record or key that does not verify (`reason`)
     +-- MalformedMessage (ValueError)  hostile input a parser refuses
     |    +-- Mismatch                  well formed, but not an answer to our request
     |    +-- BadCookie                 shaped like STUN, wrong magic cookie
     +-- the collector's (collector/*.py, rooted here):
          ApiError (an HTTP error answer), Rejected (a record not stored, `reason`),
          MalformedBody and TooManyItems (an ingest body refused whole, also ValueError),
          RegistrationError, ReflectorError, PeerFull, BadOffer (also ValueError),
          QuickstartError

Parsers raise ValueError (or a MalformedMessage) on malformed input; transport
code (probe.net) raises Failed subclasses and OSError, never observations; the
checks turn those into observations, and only `UserError`/`InternalError`
reach a command line, through `run_command`: a CommandError.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # annotations only: `voipwatch-probe --help` imports this module
    from probe.core.failures import Failure, IcmpReport

O = TypeVar("O")  # noqa: E741 (the Observation type, which lives above the core)


class VoipwatchError(Exception):
    exit_status = 1


class CommandError(VoipwatchError):
    """Ends a command: its message is the one sentence printed, `exit_status` the
    status (one table for both command lines, docs/cli.md)."""

    exit_status = 1


class InternalError(CommandError):
    exit_status = 1


class UserError(CommandError):
    """Bad input from the user; the message names the problem and where it is."""

    exit_status = 2


class VerificationFailed(CommandError):
    """A signature, a receipt or a log proof that does not verify: a finding about the
    data, not a failure of the program."""

    exit_status = 3


class Unreachable(CommandError):
    """The collector (or the database) could not be reached, or answered with an
    error: not the user's input, not our bug; records wait in the spool."""

    exit_status = 4


class FindingsFound(CommandError):
    """`run --fail-on VERDICT,...`: the pass completed and some records have them
    (for scripts and monitors)."""

    exit_status = 5


class StepFailed(VoipwatchError, Generic[O]):
    """A step of a check failed; `observation` says where and how, and is what
    the check returns."""

    def __init__(self, observation: O) -> None:
        super().__init__(str(getattr(observation, "failure", "")))
        self.observation = observation


class Failed(VoipwatchError):
    """A network operation failed: `failure` names how, `detail` says more
    (IP addresses scrubbed, see probe.core.failures.describe)."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class ConnectFailed(Failed):
    """A TCP connect that failed; `evidence`: facts about the attempt so far."""

    def __init__(self, failure: Failure, elapsed_ms: float, detail: str,
                 icmp: IcmpReport | None = None, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(failure, detail)
        self.elapsed_ms = elapsed_ms
        self.icmp = icmp
        self.evidence: dict[str, Any] = evidence if evidence is not None else {}

    def __str__(self) -> str:
        return f"{self.failure}: {self.detail}"


class HandshakeFailed(Failed):
    """The TLS handshake (or the stream set-up) failed after the TCP connect;
    the socket is closed, its traffic counted. `evidence`: the flow's facts so far."""

    def __init__(self, failure: Failure, detail: str, icmp: IcmpReport | None, elapsed_ms: float,
                 traffic: tuple[int, int], evidence: dict[str, Any]) -> None:
        super().__init__(failure, detail)
        self.icmp, self.elapsed_ms = icmp, elapsed_ms
        self.traffic, self.evidence = traffic, evidence


class FlowClosed(Failed):
    """The flow ended under us: an ICMP error, a reset, an EOF, a local refusal."""

    def __init__(self, failure: Failure, detail: str, icmp: IcmpReport | None = None) -> None:
        super().__init__(failure, detail)
        self.icmp = icmp


class DnsError(Failed):
    """A query that got no usable answer; `answer` (a probe.dns.query.DnsAnswer)
    when a response came with a failing rcode."""

    def __init__(self, failure: Failure, detail: str, answer: Any = None) -> None:
        super().__init__(failure, detail)
        self.answer = answer


class ResolveError(Failed):
    """A name a check needs did not resolve (what that means is the dns check's finding)."""


class ReflectorUnavailable(Failed):
    """The throttle reflector could not be used: no session, no report."""

    def __init__(self, failure: Failure, detail: str, status: int | None = None) -> None:
        super().__init__(failure, detail)
        self.status = status


class Unavailable(VoipwatchError):
    """A service the run goes on without (the records wait, or carry no control)."""


class ControlUnavailable(Unavailable):
    pass


class CollectorUnavailable(Unavailable):
    pass


class TooLarge(Unavailable):
    """The collector refused a batch as too large (HTTP 413): send smaller ones."""


class SignatureError(VoipwatchError):
    """A record whose signature does not verify; `reason` is a short closed-set string."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class MalformedMessage(VoipwatchError, ValueError):
    """Input from the network that a parser refuses."""


class Mismatch(MalformedMessage):
    """A well-formed message that does not answer our request (RFC 8489 §6.3 and
    RFC 3261 §17.1.3 discard it); recorded, since a real server does not send it."""


class BadCookie(MalformedMessage):
    """A message shaped like STUN whose magic cookie is wrong: not from a
    RFC 5389/8489 server (a forgery, or an RFC 3489 server's reply to another query)."""


def run_command(prog: str, handler: Callable[[Any], int], args: Any,
                interrupted: str = "interrupted") -> int:
    """Run a command's handler: a CommandError ends with one sentence and its
    exit status, anything unexpected with status 1 and, only when
    VOIPWATCH_DEBUG is set, a traceback."""
    try:
        return handler(args)
    except CommandError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: {interrupted}\n")
        return 130
    except Exception as exc:
        if os.environ.get("VOIPWATCH_DEBUG"):
            raise
        sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc} "
                         "(set VOIPWATCH_DEBUG=1 for a traceback)\n")
        return 1
