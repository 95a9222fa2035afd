"""The closed vocabulary of failure strings recorded in evidence (docs/failures.md).

Every network error a check meets goes through `classify_error`, the single place
where OS, TLS and DNS errors become strings. Anything not recognised becomes
`unknown_failure`, with the detail kept and any IP address in it scrubbed.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Failure(StrEnum):
    GENERIC_TIMEOUT = "generic_timeout_error"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    CONNECTION_ABORTED = "connection_aborted"
    EOF = "eof_error"
    HOST_UNREACHABLE = "host_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    PORT_UNREACHABLE = "port_unreachable"
    ADMIN_PROHIBITED = "admin_prohibited"
    PERMISSION_DENIED = "permission_denied"
    DNS_NXDOMAIN = "dns_nxdomain_error"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_SERVFAIL = "dns_servfail"
    DNS_REFUSED = "dns_refused"
    DNS_BOGON = "dns_bogon"
    DNS_MISMATCH = "dns_mismatch"
    DNS_RESOLUTION = "dns_resolution_failed"
    SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
    SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
    SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
    SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
    PROTOCOL_ERROR = "protocol_error"
    UNEXPECTED_RESPONSE = "unexpected_response"
    FORGED_RESPONSE = "forged_response"
    ERROR_RESPONSE = "error_response"
    ICE_NO_CANDIDATES = "ice_no_candidates"
    ICE_FAILED = "ice_failed"
    DTLS_FAILED = "dtls_failed"
    MEDIA_INTERRUPTED = "media_interrupted"
    BUDGET_EXHAUSTED = "budget_exhausted"
    NO_CONNECTIVITY = "no_connectivity"
    NOT_RUN = "not_run"
    UNKNOWN = "unknown_failure"


_ERRNO = {
    errno.ECONNREFUSED: Failure.CONNECTION_REFUSED,
    errno.ECONNRESET: Failure.CONNECTION_RESET,
    errno.ECONNABORTED: Failure.CONNECTION_ABORTED,
    errno.EPIPE: Failure.CONNECTION_RESET,
    errno.ETIMEDOUT: Failure.GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: Failure.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Failure.HOST_UNREACHABLE,
    errno.ENETUNREACH: Failure.NETWORK_UNREACHABLE,
    errno.ENONET: Failure.HOST_UNREACHABLE,
    errno.EPERM: Failure.PERMISSION_DENIED,
    errno.EACCES: Failure.PERMISSION_DENIED,
}

# ICMP destination-unreachable codes (RFC 792, RFC 1812 §5.2.7.1; RFC 4443 §3.1)
_ICMP4_FAILURE = {0: Failure.NETWORK_UNREACHABLE, 1: Failure.HOST_UNREACHABLE,
                  3: Failure.PORT_UNREACHABLE, 9: Failure.ADMIN_PROHIBITED,
                  10: Failure.ADMIN_PROHIBITED, 13: Failure.ADMIN_PROHIBITED}
_ICMP6_FAILURE = {0: Failure.NETWORK_UNREACHABLE, 1: Failure.ADMIN_PROHIBITED,
                  3: Failure.HOST_UNREACHABLE, 4: Failure.PORT_UNREACHABLE,
                  5: Failure.ADMIN_PROHIBITED, 6: Failure.ADMIN_PROHIBITED}

# What an ICMP error says, whatever its code: the destination cannot be reached
ICMP_FAILURES = frozenset({
    Failure.HOST_UNREACHABLE, Failure.NETWORK_UNREACHABLE,
    Failure.PORT_UNREACHABLE, Failure.ADMIN_PROHIBITED,
})

# What a certificate that fails validation says (docs/failures.md)
CERT_FAILURES = frozenset({
    Failure.SSL_INVALID_HOSTNAME, Failure.SSL_UNKNOWN_AUTHORITY, Failure.SSL_INVALID_CERTIFICATE,
})


@dataclass
class IcmpReport:
    """An ICMP error that came back for a flow (read from the socket's error queue)."""

    type: int
    code: int
    failure: Failure
    from_target: bool  # sent by the target itself, or by a router on the way

    def as_evidence(self) -> dict[str, Any]:
        # the sender's address is not recorded: it may identify the volunteer's network
        return {"type": self.type, "code": self.code, "from_target": self.from_target}


def icmp_failure(code: int, ipv6: bool) -> Failure:
    """The failure an ICMP (or ICMPv6) destination-unreachable code means."""
    return (_ICMP6_FAILURE if ipv6 else _ICMP4_FAILURE).get(code, Failure.HOST_UNREACHABLE)


_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])")


def _if_ipv6(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv6Address(match.group(0))
    except ValueError:
        return match.group(0)  # e.g. a time of day, 12:30:45
    return "[scrubbed]"


def scrub(text: str) -> str:
    """Remove IP addresses from free text before it goes into a record."""
    return _IPV6_CANDIDATE.sub(_if_ipv6, _IPV4.sub("[scrubbed]", text))


def classify_error(exc: BaseException) -> Failure:
    """Map an exception raised by a network operation to a failure string."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Failure.GENERIC_TIMEOUT
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = (exc.verify_message or str(exc)).lower()
        if "hostname" in message or "ip address mismatch" in message:
            return Failure.SSL_INVALID_HOSTNAME
        if "issuer" in message or "self-signed" in message or "self signed" in message:
            return Failure.SSL_UNKNOWN_AUTHORITY
        return Failure.SSL_INVALID_CERTIFICATE
    if isinstance(exc, ssl.SSLError):
        if "EOF" in str(exc) or isinstance(exc, ssl.SSLEOFError):
            return Failure.EOF
        return Failure.SSL_FAILED_HANDSHAKE
    if isinstance(exc, asyncio.IncompleteReadError):
        return Failure.EOF
    if isinstance(exc, ConnectionResetError):
        return Failure.CONNECTION_RESET
    if isinstance(exc, ConnectionRefusedError):
        return Failure.CONNECTION_REFUSED
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    return Failure.UNKNOWN


def describe(exc: BaseException) -> str:
    """A short, IP-free description of an exception for evidence."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text)[:300]
