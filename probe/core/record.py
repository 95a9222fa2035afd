"""The measurement record, schema `voipwatch.measurement/1` (see docs/measurement.md).

The signed JSON is the source of truth: these models build and validate records,
but verification always works on the parsed JSON object, so fields added by a
newer probe survive a round trip and keep their signature valid.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from probe.core.checks import CheckName

SCHEMA: Final = "voipwatch.measurement/1"

__all__ = ["SCHEMA", "Blocking", "CheckName", "LinkType", "Measurement", "Role", "Transport",
           "Verdict", "rfc3339", "utcnow"]


class Verdict(StrEnum):
    OPEN = "open"
    BLOCKED = "blocked"
    THROTTLED = "throttled"
    INCONCLUSIVE = "inconclusive"


class Blocking(StrEnum):
    """How an endpoint is blocked or throttled. Closed set, documented in docs/measurement.md."""

    DNS_NXDOMAIN = "dns.nxdomain"
    DNS_EMPTY = "dns.empty"
    DNS_SERVFAIL = "dns.servfail"
    DNS_REFUSED = "dns.refused"
    DNS_TIMEOUT = "dns.timeout"
    DNS_BOGON = "dns.bogon"
    DNS_MISMATCH = "dns.mismatch"
    TCP_RESET = "tcp.reset"
    TCP_TIMEOUT = "tcp.timeout"
    ICMP_UNREACHABLE = "icmp.unreachable"
    UDP_TIMEOUT = "udp.timeout"
    TLS_RESET = "tls.reset"
    TLS_TIMEOUT = "tls.timeout"
    TLS_FAILURE = "tls.failure"
    TLS_INVALID_CERT = "tls.invalid_cert"
    STUN_NO_RESPONSE = "stun.no_response"
    STUN_FORGED = "stun.forged"
    TURN_NO_RESPONSE = "turn.no_response"
    TURN_FORGED = "turn.forged"
    TURN_RELAY = "turn.relay"
    SIP_NO_RESPONSE = "sip.no_response"
    SIP_FORGED = "sip.forged"
    WEBRTC_ICE = "webrtc.ice"
    WEBRTC_DTLS = "webrtc.dtls"
    WEBRTC_SCTP = "webrtc.sctp"
    WEBRTC_MEDIA = "webrtc.media"
    THROTTLE_RATE = "throttle.rate"
    THROTTLE_LOSS = "throttle.loss"


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class Role(StrEnum):
    CALL = "call"
    MESSAGING = "messaging"


class LinkType(StrEnum):
    CELLULAR = "cellular"
    WIFI = "wifi"
    ETHERNET = "ethernet"
    ADSL = "adsl"
    UNKNOWN = "unknown"


class _Open(BaseModel):
    """Known fields are validated; unknown ones are kept (forward compatibility)."""

    model_config = ConfigDict(extra="allow")


class ProbeInfo(_Open):
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    software_version: str


class NetworkInfo(_Open):
    link_type: LinkType


class EndpointRef(_Open):
    check: CheckName
    host: str
    port: int = Field(ge=0, le=65535)
    transport: Transport
    role: Role


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: Literal["ed25519"] = "ed25519"
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    value: str


class Measurement(_Open):
    schema_: Literal["voipwatch.measurement/1"] = Field(SCHEMA, alias="schema")
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    started_at: datetime
    runtime_ms: int = Field(ge=0)
    probe: ProbeInfo
    network: NetworkInfo
    service: str = Field(pattern=r"^[a-z0-9-]+$")
    endpoint: EndpointRef
    verdict: Verdict
    blocking: Blocking | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    signature: Signature | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The record as the JSON object that gets signed and written."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"signature"})
        data["started_at"] = rfc3339(self.started_at)
        data["id"] = str(self.id)
        if self.signature is not None:
            data["signature"] = self.signature.model_dump(mode="json")
        return data


def rfc3339(moment: datetime) -> str:
    """UTC with millisecond precision and a `Z`, e.g. 2016-01-07T09:30:00.000Z."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: measurement times must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utcnow() -> datetime:
    return datetime.now(UTC)
