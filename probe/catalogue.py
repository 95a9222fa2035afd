"""The service catalogue: which endpoints to test for which service (YAML, version 1).

A bad catalogue is rejected as a whole before any traffic is sent, with the
file, line, entry and field named.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from probe.core.checks import CHECK_NAMES, CheckName
from probe.core.errors import UserError
from probe.core.record import Role, Transport
from probe.data import CATALOGUE

# Package data (configs/catalogue.yaml is a link to it, for reading): an installed
# probe must find its catalogue without the checkout.
DEFAULT_CATALOGUE = CATALOGUE

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?\.)*"
                       r"[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?\.?$")


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_host(value: str) -> str:
    if is_ip_literal(value) or _HOSTNAME.match(value):
        return value
    raise ValueError("must be a host name or an IP literal")


Port = Annotated[int, Field(ge=1, le=65535, strict=True)]  # YAML `true` is no port

# Length limits on every field: they bound what a catalogue entry makes the
# probe, or the collector's test helper, send (a 32 KB SIP URI once made 64 KB
# datagrams); real entries are far shorter.
MAX_LABEL = 64
MAX_HOST = 253  # RFC 1035 section 2.3.4
MAX_SECRET = 128  # TURN username, password, credential
MAX_URI = 256
MAX_URL = 512
MAX_NAME = 128
MAX_ENDPOINTS = 64  # per service
MAX_SERVICES = 256
MAX_ICE_SERVERS = 4
MAX_ICE_URLS = 4
Label = Annotated[str, Field(max_length=MAX_LABEL)]
Secret = Annotated[str, Field(max_length=MAX_SECRET)]
HostName = Annotated[str, Field(max_length=MAX_HOST)]


class _Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    label: Label | None = None

    @property
    def transport_name(self) -> Transport:
        return getattr(self, "transport", Transport.TCP)


class _HostEndpoint(_Endpoint):
    host: HostName

    _host = field_validator("host")(_check_host)


class DnsEndpoint(_HostEndpoint):
    check: Literal[CheckName.DNS]
    qtype: Literal["A", "AAAA"] = "A"
    port: Port = 443  # the TLS port used to confirm an answer that differs from the control's
    transport: Literal[Transport.UDP] = Transport.UDP


class TcpEndpoint(_HostEndpoint):
    check: Literal[CheckName.TCP]
    port: Port
    transport: Literal[Transport.TCP] = Transport.TCP


class TlsEndpoint(_HostEndpoint):
    check: Literal[CheckName.TLS]
    port: Port = 443
    sni: HostName | None = None
    transport: Literal[Transport.TLS] = Transport.TLS


class StunEndpoint(_HostEndpoint):
    check: Literal[CheckName.STUN]
    port: Port = 3478
    transport: Transport = Transport.UDP
    sni: HostName | None = None


class TurnEndpoint(_HostEndpoint):
    check: Literal[CheckName.TURN]
    port: Port = 3478
    transport: Transport = Transport.UDP
    sni: HostName | None = None
    username: Secret | None = None
    password: Secret | None = None
    peer: str | None = Field(None, max_length=MAX_HOST + 8,
                             description="host:port of a UDP echo peer to relay data to")

    @field_validator("peer")
    @classmethod
    def _peer(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 192.0.2.7:7 or [2001:db8::7]:7")
        if host.startswith("["):
            host = host[1:-1] if host.endswith("]") else host
        _check_host(host)
        return value


class SipEndpoint(_HostEndpoint):
    check: Literal[CheckName.SIP]
    port: Port = 5060
    transport: Transport = Transport.UDP
    sni: HostName | None = None
    uri: str | None = Field(None, pattern=r"^sips?:[^\s]+$", max_length=MAX_URI)


class IceServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    urls: (Annotated[str, Field(max_length=MAX_URL)]
           | tuple[Annotated[str, Field(max_length=MAX_URL)], ...])
    username: Secret | None = None
    credential: Secret | None = None

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if not isinstance(value, str) and not 1 <= len(value) <= MAX_ICE_URLS:
            raise ValueError(f"give 1 to {MAX_ICE_URLS} URLs")
        for url in (value,) if isinstance(value, str) else value:
            if not re.match(r"^(stun|stuns|turn|turns):", url):
                raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL")
        return value


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value


class _UrlEndpoint(_Endpoint):
    url: str = Field(max_length=MAX_URL)

    _url = field_validator("url")(_check_url)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


class WebrtcEndpoint(_UrlEndpoint):
    check: Literal[CheckName.WEBRTC]
    ice_servers: tuple[IceServer, ...] = Field(min_length=0, max_length=MAX_ICE_SERVERS)
    policy: Literal["all", "relay"] = "all"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def transport(self) -> Transport:
        if self.policy == "relay":
            for server in self.ice_servers:
                for url in (server.urls,) if isinstance(server.urls, str) else server.urls:
                    if url.startswith("turns:"):
                        return Transport.TLS
                    if "transport=tcp" in url:
                        return Transport.TCP
        return Transport.UDP


class ThrottleEndpoint(_UrlEndpoint):
    check: Literal[CheckName.THROTTLE]
    port: Port
    transport: Transport = Transport.UDP
    profile: str = Field(pattern=r"^[a-z0-9-]+$", max_length=MAX_LABEL)

    @field_validator("transport")
    @classmethod
    def _replayable(cls, value: Transport) -> Transport:
        if value is Transport.TLS:
            raise ValueError("throttle replays over udp or tcp, not tls")
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        from probe.wire.profiles import NAMES  # the traffic each service's calls make

        if value not in NAMES:
            raise ValueError(f"unknown profile {value!r} (known: {', '.join(NAMES)})")
        return value


Endpoint = Annotated[
    DnsEndpoint
    | TcpEndpoint
    | TlsEndpoint
    | StunEndpoint
    | TurnEndpoint
    | SipEndpoint
    | WebrtcEndpoint
    | ThrottleEndpoint,
    Field(discriminator="check"),
]
ENDPOINT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Endpoint)


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9-]+$", max_length=MAX_LABEL)
    name: str = Field(max_length=MAX_NAME)
    endpoints: tuple[Endpoint, ...] = Field(min_length=1, max_length=MAX_ENDPOINTS)


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    services: tuple[Service, ...] = Field(min_length=1, max_length=MAX_SERVICES)

    def select(self, ids: list[str] | None) -> Catalogue:
        if not ids:
            return self
        known = {s.id for s in self.services}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UserError(
                f"unknown service {unknown[0]!r} in --services (the catalogue has: "
                f"{', '.join(sorted(known))})"
            )
        return self.model_copy(update={"services": tuple(s for s in self.services if s.id in ids)})

    def without_checks(self, names: list[str] | None) -> Catalogue:
        """Leave out every endpoint of these checks (`--skip throttle` on a
        metered link); services left with no endpoint are dropped."""
        if not names:
            return self
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown:
            raise UserError(f"unknown check {unknown[0]!r} in --skip (checks: "
                            f"{', '.join(CHECK_NAMES)})")
        services = []
        for service in self.services:
            kept = tuple(e for e in service.endpoints if e.check not in names)
            if kept:
                services.append(service.model_copy(update={"endpoints": kept}))
        if not services:
            raise UserError(f"--skip {','.join(names)} leaves nothing to measure")
        return self.model_copy(update={"services": tuple(services)})


def endpoint_ref(endpoint: Any) -> dict[str, Any]:
    """The `endpoint` object of a measurement record."""
    ref = {
        "check": str(endpoint.check),
        "host": endpoint.host,
        "port": endpoint.port,
        "transport": str(endpoint.transport),
        "role": str(endpoint.role),
    }
    for extra in ("url", "policy", "profile", "sni", "qtype", "label"):
        value = getattr(endpoint, extra, None)
        if value is not None:
            ref[extra] = value
    return ref


def endpoint_key(endpoint: Any) -> str:
    """A stable identity for an endpoint inside one run."""
    return ENDPOINT_ADAPTER.dump_json(endpoint).decode()


# --- loading with precise error locations ---------------------------------------


def _strip_union_tags(data: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """pydantic puts the union tag (e.g. 'stun') in an error's location; drop it."""
    out: list[int | str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("check") == part:
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def node_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest ancestor."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _describe_loc(data: Any, loc: tuple[int | str, ...]) -> str:
    """`services[2] (whatsapp) endpoints[1] (stun stun.l.google.com) port`."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict):
                label = node.get("id") or " ".join(
                    str(node[k]) for k in ("check", "host", "url") if k in node
                )
                if label:
                    parts[-1] += f" ({label})"
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return " ".join(parts) if parts else "top level"


def _primary_errors(errors: list[Any]) -> list[Any]:
    """Drop errors that only repeat a deeper one (a list reported too short
    because its one bad item was dropped)."""
    locs = [tuple(e["loc"]) for e in errors]
    return [e for e, loc in zip(errors, locs, strict=True)
            if not any(other != loc and other[:len(loc)] == loc for other in locs)] or errors


def parse_catalogue(text: str, source: str = "<catalogue>") -> Catalogue:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{source}: a catalogue must be a mapping with 'version' and 'services'")
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        errors = _primary_errors(exc.errors())
        error = errors[0]
        loc = _strip_union_tags(data, tuple(error["loc"]))
        line = node_line(root, loc)
        where = f"{source}:{line}" if line else source
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        if error["type"] == "union_tag_invalid":
            message = f"unknown check ({', '.join(CHECK_NAMES)})"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise UserError(f"{where}: {_describe_loc(data, loc)}: {message}{more}") from exc
    seen: set[str] = set()
    for index, service in enumerate(catalogue.services):
        if service.id in seen:
            line = node_line(root, ("services", index, "id"))
            raise UserError(
                f"{source}:{line}: services[{index}]: duplicate service id {service.id!r}"
            )
        seen.add(service.id)
    return catalogue


def load_catalogue(path: Path | None = None) -> Catalogue:
    path = path or DEFAULT_CATALOGUE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"catalogue not found: {path}") from exc
    except IsADirectoryError as exc:
        raise UserError(f"catalogue {path} is a directory, not a YAML file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the catalogue {path}: {exc}") from exc
    return parse_catalogue(text, str(path))
