"""Hostile responders on loopback, one set per protocol: each answers the way a
broken server or a forging middlebox might (wrong transaction id, bad cookie,
truncated, garbage, our own request reflected, a rewriting SIP ALG), so the
tests can show that the probe records what it saw and never crashes.

A behaviour is a function from the request received to the list of messages
to send back (empty: stay silent). `udp_responder` and `tcp_responder` run one
on 127.0.0.1:0 and yield a `Responder` (port, requests seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

from aioice.stun import Class, Message, parse_message

Behaviour = Callable[[bytes], list[bytes]]
GARBAGE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Responder:
    port: int = 0
    requests: list[bytes] = field(default_factory=list)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, behaviour: Behaviour, state: Responder) -> None:
        self.behaviour, self.state = behaviour, state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.state.requests.append(data)
        for reply in self.behaviour(data):
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def udp_responder(behaviour: Behaviour, host: str = "127.0.0.1") -> AsyncIterator[Responder]:
    state = Responder()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Udp(behaviour, state), local_addr=(host, 0))
    state.port = transport.get_extra_info("sockname")[1]
    try:
        yield state
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def tcp_responder(behaviour: Behaviour, host: str = "127.0.0.1",
                        ssl_context: ssl.SSLContext | None = None,
                        close_after: bool = False) -> AsyncIterator[Responder]:
    """Answers each chunk read; `close_after`: then closes (FIN)."""
    state = Responder()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                state.requests.append(data)
                for reply in behaviour(data):
                    writer.write(reply)
                await writer.drain()
                if close_after:
                    writer.close()
                    return

    server = await asyncio.start_server(handle, host, 0, ssl=ssl_context)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()


def silent(request: bytes) -> list[bytes]:
    return []


def reflect(request: bytes) -> list[bytes]:
    return [request]


def garbage(request: bytes) -> list[bytes]:
    return [GARBAGE]


# --- STUN and TURN ------------------------------------------------------------------


def _request(data: bytes) -> Message:
    return parse_message(data)


def stun_success(request: bytes, mapped: tuple[str, int] = ("127.0.0.1", 40000),
                 transaction_id: bytes | None = None) -> bytes:
    message = _request(request)
    reply = Message(message.message_method, Class.RESPONSE,
                    transaction_id=transaction_id or message.transaction_id,
                    attributes={"XOR-MAPPED-ADDRESS": mapped})
    reply.add_fingerprint()
    return bytes(reply)


def stun_wrong_txid(request: bytes) -> list[bytes]:
    return [stun_success(request, transaction_id=os.urandom(12))]


def stun_bad_cookie(request: bytes) -> list[bytes]:
    reply = stun_success(request)
    return [reply[:4] + b"\xde\xad\xbe\xef" + reply[8:]]


def stun_truncated(request: bytes) -> list[bytes]:
    return [stun_success(request)[:26]]


def stun_mapped(address: tuple[str, int]) -> Behaviour:
    return lambda request: [stun_success(request, mapped=address)]


def stun_forged_then_real(request: bytes) -> list[bytes]:
    """An injected answer racing the real one: the real one must still count."""
    return [stun_success(request, transaction_id=os.urandom(12)), stun_success(request)]


def stun_answer_nth(n: int) -> Behaviour:
    """Drops the first n-1 requests (loss), answers from the n-th on."""
    seen = {"count": 0}

    def behaviour(request: bytes) -> list[bytes]:
        seen["count"] += 1
        return [stun_success(request)] if seen["count"] >= n else []
    return behaviour


def turn_401_without_nonce(request: bytes) -> list[bytes]:
    message = _request(request)
    reply = Message(message.message_method, Class.ERROR, transaction_id=message.transaction_id,
                    attributes={"ERROR-CODE": (401, "Unauthorized")})
    return [bytes(reply)]


def turn_unsigned_allocation(request: bytes) -> list[bytes]:
    """Challenges like a real server, then 'allocates' with no valid
    MESSAGE-INTEGRITY: what a forger without the password can do."""
    message = _request(request)
    if "USERNAME" not in message.attributes:
        reply = Message(message.message_method, Class.ERROR,
                        transaction_id=message.transaction_id,
                        attributes={"ERROR-CODE": (401, "Unauthorized"), "REALM": "forged",
                                    "NONCE": b"0123456789abcdef"})
    else:
        reply = Message(message.message_method, Class.RESPONSE,
                        transaction_id=message.transaction_id,
                        attributes={"XOR-RELAYED-ADDRESS": ("127.0.0.1", 50000),
                                    "XOR-MAPPED-ADDRESS": ("127.0.0.1", 40000),
                                    "LIFETIME": 600})
        reply.add_message_integrity(b"not the key")
    return [bytes(reply)]


# --- SIP ------------------------------------------------------------------------------


def _headers(request: bytes) -> dict[str, str]:
    lines = request.decode(errors="replace").split("\r\n")
    out = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name and value:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def sip_reply(request: bytes, status: str = "200 OK", *, via: str | None = None,
              call_id: str | None = None, body: bytes = b"",
              content_length: int | None = None) -> bytes:
    """A response copying the request's Via, From, To, Call-ID and CSeq
    (RFC 3261 §8.2.6.2), with optional edits."""
    headers = _headers(request)
    lines = [f"SIP/2.0 {status}",
             f"Via: {via or headers['via']}",
             f"From: {headers['from']}",
             f"To: {headers['to']};tag=hostile",
             f"Call-ID: {call_id or headers['call-id']}",
             f"CSeq: {headers['cseq']}",
             "Server: hostile-test",
             f"Content-Length: {len(body) if content_length is None else content_length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sip_status(status: str) -> Behaviour:
    return lambda request: [sip_reply(request, status)]


def sip_alg(request: bytes) -> list[bytes]:
    """A NAT's SIP ALG: the sent-by and the Call-ID's host rewritten to its public address."""
    headers = _headers(request)
    via = re.sub(r"(SIP/2\.0/\w+ )[^;]+", r"\g<1>203.0.113.7:5060", headers["via"])
    call_id = headers["call-id"].split("@")[0] + "@203.0.113.7"
    return [sip_reply(request, via=via + ";received=203.0.113.7", call_id=call_id)]


def sip_wrong_branch(request: bytes) -> list[bytes]:
    via = re.sub(r"branch=[^;]+", "branch=z9hG4bKsomeoneelse", _headers(request)["via"])
    return [sip_reply(request, via=via)]


def sip_truncated(request: bytes) -> list[bytes]:
    return [sip_reply(request, body=b"v=0\r\n", content_length=200)]


def sip_provisional_then_final(request: bytes) -> list[bytes]:
    return [sip_reply(request, "100 Trying"), sip_reply(request, "200 OK")]
