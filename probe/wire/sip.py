"""SIP messages (RFC 3261): the OPTIONS request the `sip` check sends, and a
response parser for input from a path that may be hostile.

Parsing raises only `ValueError`. It follows RFC 3261 §7 (start line, header
fields with compact forms and folded lines, Content-Length) and §18.3 (framing
on a byte stream), and reads Via header values (§20.42, RFC 3581 `rport`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = ["Response", "Via", "format_host", "frame_length", "options_request",
           "parse_response", "parse_via"]

MAX_MESSAGE = 65535
_START = b"SIP/2.0 "
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?$")
_HEADER = re.compile(r"^([!%'*+.0-9A-Z_`a-z~-]+)[ \t]*:[ \t]*(.*)$")
_VIA = re.compile(r"^(SIP)[ \t]*/[ \t]*(2\.0)[ \t]*/[ \t]*([!%'*+.0-9A-Z_`a-z~-]+)[ \t]+"
                  r"(\[[0-9A-Fa-f:.]+\]|[^;:\s\[\]]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*"
                  r"(;.*)?$")
# RFC 3261 §7.3.3 and the IANA registry
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type", "e": "content-encoding",
           "k": "supported", "s": "subject", "o": "event", "u": "allow-events",
           "r": "refer-to", "b": "referred-by", "x": "session-expires"}


def format_host(host: str) -> str:
    """A host as written in SIP: IPv6 references in brackets (RFC 3261 §25.1)."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def options_request(*, uri: str, transport: str, local: tuple[str, int], branch: str,
                    from_tag: str, call_id: str, cseq: int = 1) -> bytes:
    """An OPTIONS request (RFC 3261 §11) from an anonymous caller (RFC 3323)
    with `rport` (RFC 3581) so that the answer finds its way through a NAT."""
    sent_by = f"{format_host(local[0])}:{local[1]}"
    lines = [
        f"OPTIONS {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {sent_by};branch={branch};rport",
        "Max-Forwards: 70",
        f'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag={from_tag}',
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} OPTIONS",
        f"Contact: <sip:anonymous@{sent_by};transport={transport.lower()}>",
        "Accept: application/sdp",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True)
class Via:
    protocol: str  # e.g. SIP/2.0/UDP
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        return self.protocol.rsplit("/", 1)[-1].upper()


def parse_via(value: str) -> Via:
    """One via-parm (RFC 3261 §20.42): protocol, sent-by host and port, parameters."""
    found = _VIA.match(value.strip())
    if not found:
        raise ValueError("malformed Via header")
    name, version, transport, host, port, params = found.groups()
    number = int(port) if port else None
    if number is not None and not 0 < number < 65536:
        raise ValueError("Via port out of range")
    parsed: dict[str, str | None] = {}
    for param in (params or "").split(";")[1:]:
        key, eq, val = param.strip().partition("=")
        if not key:
            raise ValueError("empty Via parameter")
        parsed[key.lower()] = val.strip() if eq else None
    return Via(f"{name}/{version}/{transport.upper()}", host.strip("[]"), number, parsed)


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @property
    def vias(self) -> list[str]:
        """Every via-parm, top first (a header may carry several, comma-separated)."""
        return [part.strip() for value in self.all("via") for part in value.split(",")
                if part.strip()]

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.get("cseq") or ""
        number, _, method = value.strip().partition(" ")
        if not number.isdigit() or not method.strip():
            raise ValueError("malformed CSeq")
        return int(number), method.strip().upper()


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    data = data.lstrip(b"\r\n")  # CRLFs before the start line are ignored (§7.5)
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, rest = data.partition(separator)
        if found:
            return head, rest
    raise ValueError("SIP message without the empty line that ends its header")


def parse_response(data: bytes) -> Response:
    """A SIP response (RFC 3261 §7.2). Needs Via and CSeq, without which it
    cannot belong to any transaction; a body shorter than Content-Length says
    the message was truncated (§18.3)."""
    if len(data) > MAX_MESSAGE:
        raise ValueError("SIP message too large")
    head, rest = _split_head(data)
    lines = head.decode("utf-8").replace("\r\n", "\n").split("\n")
    status = _STATUS_LINE.match(lines[0])
    if not status:
        raise ValueError("not a SIP response: bad status line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # a folded line continues the previous header
            if not headers:
                raise ValueError("SIP header continuation without a header")
            headers[-1] = (headers[-1][0], f"{headers[-1][1]} {line.strip()}")
            continue
        found = _HEADER.match(line)
        if not found:
            raise ValueError("malformed SIP header line")
        name = found.group(1).lower()
        headers.append((COMPACT.get(name, name), found.group(2).strip()))
    response = Response(int(status.group(1)), (status.group(2) or "").strip(), headers)
    if not response.vias or response.get("cseq") is None:
        raise ValueError("SIP response without Via or CSeq")
    response.cseq  # noqa: B018  (validates it)
    length = response.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ValueError("malformed Content-Length")
        if int(length) > len(rest):
            raise ValueError("SIP body shorter than its Content-Length: truncated")
        rest = rest[:int(length)]
    response.body = rest
    return response


def frame_length(buffer: bytes) -> int | None:
    """Length of the first message in a TCP/TLS byte stream (RFC 3261 §18.3:
    Content-Length is mandatory there), None until enough has come. Raises
    ValueError as soon as the stream cannot be SIP responses."""
    start = len(buffer) - len(buffer.lstrip(b"\r\n"))
    body = buffer[start:]
    if body[:len(_START)] != _START[:len(body)]:
        raise ValueError("not a SIP response")
    end = body.find(b"\r\n\r\n")
    if end < 0:
        if len(body) > MAX_MESSAGE:
            raise ValueError("SIP header too large")
        return None
    length = None
    for line in body[:end].split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            if not value.strip().isdigit():
                raise ValueError("malformed Content-Length")
            length = int(value.strip())
    if length is None:
        raise ValueError("SIP message on a stream without Content-Length")
    if length > MAX_MESSAGE:
        raise ValueError("SIP body too large")
    return start + end + 4 + length
