"""The measurement record, schema `voipwatch.measurement/1` (see docs/measurement.md).

The signed JSON is the source of truth: these models build and validate records,
but verification always works on the parsed JSON object, so fields added by a
newer probe survive a round trip and keep their signature valid.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from probe.core.checks import CheckName
from probe.core.ids import time_ordered_id

SCHEMA: Final = "voipwatch.measurement/1"
# how deep a record may nest, the record itself counting as 1 and each object or
# array in it one more (docs/measurement.md): far below what the exporters'
# JSON writer takes (orjson: 255, and an OONI export adds two levels)
MAX_DEPTH: Final = 64

__all__ = ["MAX_DEPTH", "SCHEMA", "Access", "Blocking", "CheckName", "Confidence", "LinkSource",
           "LinkType", "Measurement", "Role", "Transport", "Upstream", "Verdict", "deeper_than",
           "parse_rfc3339", "rfc3339", "utcnow"]

# RFC 3339's date-time (section 5.6): `T` between date and time, seconds, any
# fraction, and `Z` or a numeric offset. What every reader of a stored record
# parses alike (probe.core.evidence.parse_time, collector/ooni.py): pydantic's
# own datetime parsing would also take a Unix time ("1795958016", 1795958016),
# a lower-case `z` or a `+0100` offset, which the readers then fail on.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})",
                      re.ASCII)  # ASCII digits only: \d would take "٢٠١٦" too
_TIME_EXAMPLE = "2016-01-07T09:30:00.000Z"


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with its time zone, as records carry `started_at`;
    ValueError saying what is wrong for anything else."""
    if not _RFC3339.fullmatch(text):
        if re.fullmatch(r"[+-]?[0-9]+(?:\.[0-9]*)?", text.strip()):
            raise ValueError("a Unix time is not accepted")
        raise ValueError("the form is YYYY-MM-DDTHH:MM:SS[.fraction] then Z or +HH:MM/-HH:MM")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment.astimezone(UTC)  # in range once in UTC too (0001-01-01T00:00:00+01:00 is not)
    except (ValueError, OverflowError):
        raise ValueError("no such date and time") from None
    return moment


def _record_time(value: Any) -> Any:
    """`started_at` from JSON: an RFC 3339 string with a time zone, nothing else
    (a datetime, when a probe builds the model in Python, passes as is)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "rfc3339_type", "must be a string, an RFC 3339 time with a time zone such as "
            "{example}, not {kind}", {"example": _TIME_EXAMPLE, "kind": _json_kind(value)})
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 time with a time zone such as {example}: "
            "{problem}", {"example": _TIME_EXAMPLE, "problem": str(exc)}) from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    if isinstance(value, (int, float)) or type(value).__name__ == "Fragment":
        return "a number"  # the collector parses JSON fractions as orjson Fragments
    return f"a {type(value).__name__}"


RecordTime = Annotated[datetime, BeforeValidator(_record_time)]
# JSON integers only: lax mode would also take "12", 12.0 or true, which the
# stored record then still says (readers compare the signed JSON, not the model)
StrictCount = Annotated[int, Field(strict=True)]


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a parsed JSON value nests objects and arrays deeper than `limit`
    levels (the value itself, when one, is level 1). Iterative: any depth."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


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


class Access(StrEnum):
    """The local access link: how this machine is attached (docs/linktype.md)."""

    WIFI = "wifi"
    ETHERNET = "ethernet"
    USB = "usb"  # a USB modem or a tethered phone (cdc_ether, rndis_host, cdc_ncm...)
    WWAN = "wwan"  # a cellular modem seen as such (DEVTYPE=wwan, ModemManager)
    UNKNOWN = "unknown"


class Upstream(StrEnum):
    """The network behind the access link: cellular behind a phone's hotspot is cellular."""

    CELLULAR = "cellular"
    FIXED = "fixed"
    UNKNOWN = "unknown"


class LinkSource(StrEnum):
    """How a link fact was decided, best evidence first (docs/linktype.md)."""

    USER = "user"  # --link-type, the config
    MODEM = "modem"  # ModemManager: the route goes over a modem's bearer
    NETWORKMANAGER = "networkmanager"  # NetworkManager's device, connection, metered state
    OS = "os"  # macOS or Windows' own tools
    DRIVER = "driver"  # sysfs: DEVTYPE, the kernel driver, the USB vendor
    HOTSPOT = "hotspot"  # a hint: what a phone's hotspot hands out (DHCP, subnets)
    ASN = "asn"  # a hint: the measured network's ASN (probe/data/upstream_asns.yaml)
    NONE = "none"  # nothing said it
    AUTO = "auto"  # records of earlier probes: detected from sysfs, how not said


class Confidence(StrEnum):
    """How sure the probe is of the upstream kind (docs/linktype.md)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Attribution(StrEnum):
    """Where the probe learnt its country and ASN, at measurement time."""

    CONTROL = "control"  # the test helper looked up the address this link showed it
    LOCAL = "local"  # a .mmdb file on the probe, for the link's public address
    NONE = "none"


class _Open(BaseModel):
    """Known fields are validated; unknown ones are kept (forward compatibility)."""

    model_config = ConfigDict(extra="allow")


class ProbeInfo(_Open):
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    software_version: str


class NetworkInfo(_Open):
    """The measured network, signed. `link_type` is the one-word summary (schema
    v1); the rest was added in v2 of the probe and is absent from older records."""

    link_type: LinkType
    link_type_source: LinkSource | None = None
    access: Access | None = None
    access_source: LinkSource | None = None
    upstream: Upstream | None = None
    upstream_source: LinkSource | None = None
    upstream_confidence: Confidence | None = None
    # what the detection saw, best evidence first (never an address or a network name)
    link_evidence: list[Annotated[str, Field(max_length=160)]] | None = Field(None, max_length=16)
    cc: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    asn: StrictCount | None = Field(None, ge=0, lt=2**32)
    as_org: str | None = Field(None, max_length=256)
    resolver_asn: StrictCount | None = Field(None, ge=0, lt=2**32)
    attribution: Attribution | None = None
    # changes noticed during the pass, up to this record (absent: none)
    changes: list[dict[str, Any]] | None = Field(None, max_length=32)


class EndpointRef(_Open):
    check: CheckName
    host: str
    port: StrictCount = Field(ge=0, le=65535)
    transport: Transport
    role: Role


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: Literal["ed25519"] = "ed25519"
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    value: str


class Measurement(_Open):
    schema_: Literal["voipwatch.measurement/1"] = Field(SCHEMA, alias="schema")
    id: uuid.UUID = Field(default_factory=time_ordered_id)
    started_at: RecordTime  # an RFC 3339 string with a time zone, nothing else
    runtime_ms: StrictCount = Field(ge=0)
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
        # the network's optional facts appear when set (a null cc is a finding; a key
        # an older probe never knew is not)
        data["network"] = self.network.model_dump(mode="json", exclude_unset=True)
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
