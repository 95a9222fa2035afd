"""Scenario files (YAML, `deploy/lab/scenarios/*.yaml`): a censor's policy per
link type, built from primitives, and the verdicts the probe must reach.

    name: udp-3478-dropped
    description: the cellular operator drops UDP port 3478
    links: [cellular, adsl]          # probe hosts that measure (default: all)
    policy:
      cellular:
        - {action: drop, proto: udp, ports: [3478]}
    down: []                         # reference hosts that are down (lab names)
    expect:
      default: open                  # for every record no case matches
      cases:
        - {link: cellular, check: stun, port: 3478, verdict: blocked,
           blocking: stun.no_response, why: "no answer while the control gets one"}

Rule actions: `drop` (with `after: N`, only once a flow has carried N packets,
both ways), `reset` (TCP RST), `icmp` (an ICMP error of `type`),
`loss` (`percent` of packets, both directions), `rate` (`kbit`, both
directions, tc htb), `dns` (the router sends the link's port 53 to the lying
resolver, which answers `answer` for `names`). Selectors, all optional and
ANDed: `proto`, `ports`, `hosts` (lab names or addresses), `service` and
`role` (the hosts of those catalogue endpoints; for a `webrtc` endpoint, its
ICE servers' hosts), `payload` (`stun`: the magic cookie of RFC 8489 section
5; `dtls`: a DTLS handshake record, RFC 6347 section 4.1; `rtp`: a first byte
of 128-191, RTP or RTCP by RFC 7983 section 7; `tls`, with `proto: tcp`: a
segment that starts a TLS handshake record, as the ClientHello does, RFC 8446
section 5.1). A case may also select by an
endpoint's `label` or `policy` (the webrtc variants share check, host, port).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deploy.lab.shell import UsageError
from probe.catalogue import node_line
from probe.core.record import Blocking, CheckName, LinkType, Role, Transport, Verdict

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ICMP_TYPES = ("admin-prohibited", "port-unreachable", "host-unreachable", "net-unreachable")
DNS_LIES = ("nxdomain", "servfail", "refused", "empty", "drop")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _port_spec(value: int | str) -> int | str:
    text = str(value)
    low, _, high = text.partition("-")
    try:
        numbers = [int(low)] + ([int(high)] if high else [])
    except ValueError:
        raise ValueError(f"{value!r} is not a port or a range like 3478-3481") from None
    if not all(1 <= n <= 65535 for n in numbers) or numbers != sorted(numbers):
        raise ValueError(f"{value!r} is not a port or a range like 3478-3481")
    return value


PortSpec = int | str


class _Selector(_Strict):
    proto: Literal["tcp", "udp"] | None = None
    ports: tuple[PortSpec, ...] = ()
    hosts: tuple[str, ...] = ()
    service: str | None = None
    role: Role | None = None
    payload: Literal["stun", "dtls", "rtp", "tls"] | None = None

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        return tuple(_port_spec(v) for v in value)

    @model_validator(mode="after")
    def _consistent(self) -> _Selector:
        if self.ports and self.proto is None:
            raise ValueError("`ports` needs `proto: tcp` or `proto: udp`")
        if self.payload == "tls" and self.proto != "tcp":
            raise ValueError("payload 'tls' is matched in TCP segments only (proto: tcp)")
        if self.payload and self.payload != "tls" and self.proto == "tcp":
            raise ValueError(f"payload {self.payload!r} is matched in UDP datagrams only")
        return self


class DropRule(_Selector):
    action: Literal["drop"]
    # let the first N packets of each flow through (counted in the direction of
    # the flow's first packet), then drop the rest of it, both ways: a call
    # that sets up, then dies
    after: int | None = Field(None, ge=1, le=1_000_000)


class ResetRule(_Selector):
    action: Literal["reset"]
    proto: Literal["tcp"] = "tcp"


class IcmpRule(_Selector):
    action: Literal["icmp"]
    type: Literal["admin-prohibited", "port-unreachable", "host-unreachable",
                  "net-unreachable"] = "admin-prohibited"


class LossRule(_Selector):
    action: Literal["loss"]
    percent: int = Field(ge=1, le=99)


class RateRule(_Selector):
    action: Literal["rate"]
    kbit: int = Field(ge=8, le=10_000_000)


class DnsRule(_Strict):
    action: Literal["dns"]
    names: tuple[str, ...] = Field(min_length=1)
    answer: Literal["nxdomain", "servfail", "refused", "empty", "drop"] | tuple[str, ...]

    @field_validator("answer")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if isinstance(value, tuple):
            import ipaddress

            if not value:
                raise ValueError("a list of addresses must not be empty (use `empty`)")
            for address in value:
                ipaddress.ip_address(address)
        return value


Rule = Annotated[DropRule | ResetRule | IcmpRule | LossRule | RateRule | DnsRule,
                 Field(discriminator="action")]


def _one_or_many(value: Any) -> Any:
    return value if value is None or isinstance(value, (list, tuple)) else (value,)


class Case(_Strict):
    """Which records (all given fields must match) get which verdict."""

    link: tuple[LinkType, ...] | None = None
    service: tuple[str, ...] | None = None
    role: tuple[Role, ...] | None = None
    check: tuple[CheckName, ...] | None = None
    host: tuple[str, ...] | None = None
    port: tuple[int, ...] | None = None
    transport: tuple[Transport, ...] | None = None
    label: tuple[str, ...] | None = None
    policy: tuple[Literal["all", "relay"], ...] | None = None
    verdict: Verdict
    blocking: Blocking | None = None
    # what the record's evidence must also say, by dotted path
    # (`beyond_dns.verdict: open`, `path.hop: 2`); a value, or {min, max} for a number
    evidence: dict[str, Any] | None = None
    why: str | None = None

    _lists = field_validator("link", "service", "role", "check", "host", "port", "transport",
                             "label", "policy", mode="before")(_one_or_many)

    @model_validator(mode="after")
    def _blocking_goes_with_verdict(self) -> Case:
        named = self.verdict in (Verdict.BLOCKED, Verdict.THROTTLED)
        if named and self.blocking is None:
            raise ValueError(f"a `{self.verdict}` case must name its `blocking` method")
        if not named and self.blocking is not None:
            raise ValueError(f"a `{self.verdict}` case has no `blocking` (records carry null)")
        return self

    def matches(self, link: str, record: dict[str, Any]) -> bool:
        endpoint = record["endpoint"]
        fields: dict[str, Any] = {
            "link": link, "service": record["service"], "role": endpoint["role"],
            "check": endpoint["check"], "host": endpoint["host"], "port": endpoint["port"],
            "transport": endpoint["transport"], "label": endpoint.get("label"),
            "policy": endpoint.get("policy"),
        }
        for name, wanted in fields.items():
            allowed = getattr(self, name)
            if allowed is not None and wanted not in [str(a) if not isinstance(a, int) else a
                                                      for a in allowed]:
                return False
        return True


class Expected(_Strict):
    verdict: Verdict
    blocking: Blocking | None = None
    evidence: dict[str, Any] | None = None

    def evidence_mismatches(self, record: dict[str, Any]) -> list[str]:
        """What the record's evidence says otherwise than expected, one line each."""
        found = []
        for path, wanted in (self.evidence or {}).items():
            value: Any = record.get("evidence", {})
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if not _agrees(value, wanted):
                found.append(f"{path}: expected {wanted}, got {value}")
        return found


def _agrees(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict) and set(wanted) <= {"min", "max"}:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and wanted.get("min", value) <= value <= wanted.get("max", value))
    return bool(value == wanted)


class Expectations(_Strict):
    default: Verdict = Verdict.OPEN
    cases: tuple[Case, ...] = ()

    def expected(self, link: str, record: dict[str, Any]) -> Expected:
        for case in self.cases:
            if case.matches(link, record):
                return Expected(verdict=case.verdict, blocking=case.blocking,
                                evidence=case.evidence)
        return Expected(verdict=self.default)


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    description: str
    links: tuple[LinkType, ...] = (LinkType.CELLULAR, LinkType.ADSL, LinkType.WIFI)
    policy: dict[LinkType, tuple[Rule, ...]] = Field(default_factory=dict)
    down: tuple[str, ...] = ()
    expect: Expectations = Expectations()
    timeout: float | None = Field(None, gt=0, description="--timeout for the probe runs")

    @field_validator("links", mode="before")
    @classmethod
    def _links(cls, value: Any) -> Any:
        return _one_or_many(value)


# --- loading with file:line errors -----------------------------------------------


def _data_path(data: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The error's location in the YAML document: pydantic adds union tags (a
    rule's `action`) and type names (`int`) that are not keys of the document."""
    out: list[int | str] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                node = node[part]
            elif node.get("action") == part:
                continue
            else:
                node = None  # a missing field: keep its name, the line is the parent's
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(part, str):
            continue  # a type name inside a scalar
        out.append(part)
    return tuple(out)


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UsageError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a scenario is a mapping with name, description, policy, "
                       "expect")
    data.setdefault("name", Path(source).stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = _data_path(data, tuple(error["loc"]))
        line = node_line(root, loc)
        where = f"{source}:{line}" if line else source
        field = ".".join(str(p) for p in loc) or "top level"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "union_tag_invalid":
            message = (f"unknown action {error['input'].get('action')!r} "
                       "(drop, reset, icmp, loss, rate, dns)")
        raise UsageError(f"{where}: {field}: {message}") from exc


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the scenario {path}: {exc.strerror}") from exc
    return parse_scenario(text, str(path))


def scenario_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = SCENARIOS / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = ", ".join(p.stem for p in sorted(SCENARIOS.glob("*.yaml")))
        raise UsageError(f"no scenario {name_or_path!r} (known: {known})")
    return candidate


def all_scenarios() -> list[Scenario]:
    return [load_scenario(p) for p in sorted(SCENARIOS.glob("*.yaml"))]
