"""Property tests: random and mutated bytes into every parser the probe runs on
network input. Each must raise only ValueError (or the one exception type its
caller handles), and the checks built on them must turn anything into an
observation, never a crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import types
from collections.abc import Callable
from typing import Any, cast

import dns.exception
import dns.message
import dns.rdatatype
from aioice.stun import Class, Message, Method
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import sip as sip_check
from probe.checks import stun as stun_check
from probe.checks import turn as turn_check
from probe.checks.base import Context, Observation, Status
from probe.core.errors import DnsError
from probe.core.record import Transport
from probe.dns.query import _answer
from probe.net.flow import Flow, Mismatch, Transaction
from probe.wire import sip as sipmsg
from probe.wire import stun as stunmsg
from tests.support import hostile
from tests.support.pki import TestCA

# VOIPWATCH_FUZZ_EXAMPLES=20000 for a deeper hunt than the suite's quick pass
EXAMPLES = int(os.environ.get("VOIPWATCH_FUZZ_EXAMPLES", "400"))
FAST = settings(max_examples=EXAMPLES, deadline=None)
SLOW = settings(max_examples=max(EXAMPLES // 30, 12), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

TXID = bytes(range(12))
KEY = stunmsg.long_term_key("u", "realm", "p")


def _templates() -> list[bytes]:
    binding = Message(Method.BINDING, Class.RESPONSE, transaction_id=TXID, attributes={
        "XOR-MAPPED-ADDRESS": ("192.0.2.1", 4000), "MAPPED-ADDRESS": ("192.0.2.1", 4000),
        "SOFTWARE": "fuzz", "ERROR-CODE": (401, "Unauthorized"), "REALM": "realm",
        "NONCE": b"nonce", "LIFETIME": 600, "XOR-RELAYED-ADDRESS": ("2001:db8::1", 5000)})
    signed = Message(Method.ALLOCATE, Class.RESPONSE, transaction_id=TXID, attributes={
        "XOR-MAPPED-ADDRESS": ("192.0.2.1", 4000), "LIFETIME": 600,
        "XOR-RELAYED-ADDRESS": ("192.0.2.9", 5000)})
    signed.add_message_integrity(KEY)
    data = Message(Method.DATA, Class.INDICATION, transaction_id=TXID, attributes={
        "XOR-PEER-ADDRESS": ("127.0.0.1", 7), "DATA": b"token"})
    with_fingerprint = Message(Method.BINDING, Class.RESPONSE, transaction_id=TXID,
                               attributes={"XOR-MAPPED-ADDRESS": ("127.0.0.1", 4000)})
    with_fingerprint.add_fingerprint()
    return [bytes(binding), bytes(signed), bytes(data), bytes(with_fingerprint),
            stunmsg.channel_data(0x4001, b"token", pad=True)]


STUN_TEMPLATES = _templates()
SIP_TEMPLATE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport=5060;"
    b"received=127.0.0.1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
    b"Call-ID: x@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nServer: fuzz\r\nContent-Length: 2\r\n\r\nok")


def mutated(templates: list[bytes]) -> st.SearchStrategy[bytes]:
    """A real message with some bytes changed, cut short or extended."""
    @st.composite
    def build(draw: Any) -> bytes:
        data = bytearray(draw(st.sampled_from(templates)))
        for _ in range(draw(st.integers(0, 6))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=24))
    return build()


def network_bytes(templates: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), mutated(templates))


def only_value_error(parse: Callable[[Any], Any], data: bytes | str) -> Any:
    try:
        return parse(data)
    except ValueError:
        return None


# --- STUN / TURN --------------------------------------------------------------------


@FAST
@given(network_bytes(STUN_TEMPLATES))
def test_stun_parsers_raise_only_value_error(data: bytes) -> None:
    only_value_error(stunmsg.parse, data)
    only_value_error(stunmsg.parse_channel_data, data)
    for channels in ((), {0x4001}):
        only_value_error(lambda d, c=channels: stunmsg.frame_length(d, channels=c), data)
    stunmsg.is_channel_data(data)


@FAST
@given(network_bytes(STUN_TEMPLATES))
def test_stun_check_turns_any_datagram_into_an_observation(data: bytes) -> None:
    local = ("127.0.0.1", 4000)
    try:
        message, _ = stun_check.match(data, [TXID])
    except ValueError as exc:  # Mismatch is one too
        outcome: Transaction[Any] = Transaction()
        outcome.note("mismatch" if isinstance(exc, Mismatch) else "malformed", exc)
        observation = stun_check.observe(outcome, local, "127.0.0.1", Transport.UDP)
        assert observation.status is Status.FAILED
        return
    outcome = Transaction(ended="reply", reply=message, attempts=[{"sent_ms": 0.0}])
    observation = stun_check.observe(outcome, local, "127.0.0.1", Transport.UDP)
    assert isinstance(observation, Observation)
    json.dumps(observation.evidence)  # evidence must stay serialisable


@FAST
@given(network_bytes(STUN_TEMPLATES))
def test_turn_session_matchers_raise_only_value_error(data: bytes) -> None:
    flow = types.SimpleNamespace(local=("127.0.0.1", 4000), address="127.0.0.1",
                                 transport=Transport.UDP, datagram=True)
    session = turn_check.Session(cast(Flow, flow), 1.0, 0.0, {0x4001})  # a flow that never sends
    session.sent_ids.add(os.urandom(12))
    request = Message(Method.ALLOCATE, Class.REQUEST, transaction_id=TXID)
    session.key = KEY
    matched = only_value_error(lambda d: session.match_response(request, d), data)
    only_value_error(lambda d: session.match_data(("127.0.0.1", 7), b"token", d), data)
    only_value_error(lambda d: session.match_channel(0x4001, b"token", b"old", d), data)
    if matched is not None:
        reply = matched[0]
        reply.check_message_integrity(KEY)
        with contextlib.suppress(turn_check.StepFailed):
            session.allocation(reply)
        session.error_response("allocate", reply)


# --- SIP ----------------------------------------------------------------------------


@FAST
@given(network_bytes([SIP_TEMPLATE]))
def test_sip_parsers_raise_only_value_error(data: bytes) -> None:
    response = only_value_error(sipmsg.parse_response, data)
    only_value_error(sipmsg.frame_length, data)
    if response is not None:
        for via in response.vias:
            only_value_error(sipmsg.parse_via, via)


@FAST
@given(st.text(max_size=120))
def test_via_parser_raises_only_value_error(text: str) -> None:
    only_value_error(lambda t: sipmsg.parse_via(t.decode()), text.encode())


@FAST
@given(network_bytes([SIP_TEMPLATE]))
def test_sip_check_turns_any_answer_into_an_observation(data: bytes) -> None:
    sent = sip_check.Sent("udp", ("127.0.0.1", 5060))
    sent.branch, sent.call_id = "z9hG4bKabc", "x@127.0.0.1"
    try:
        response, _ = sent.match(data)
    except ValueError:
        return
    outcome = Transaction(ended="reply", reply=response, attempts=[{"sent_ms": 0.0}])
    observation = sip_check.observe(outcome, sent, [], Transport.UDP)
    assert observation.status is Status.OK
    json.dumps(observation.evidence)


# --- DNS answers and the TLS certificate summary ----------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_dns_answers_are_handled(data: bytes) -> None:
    """What dnsquery does with an answer: dnspython parses it (raising only
    DNSException, which query_addresses catches), then `_answer` reads it."""
    wire = b"\x12\x34\x81\x80" + data
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return
    with contextlib.suppress(DnsError):
        _answer(message, dns.rdatatype.A, "127.0.0.1:53", 1.0, 1, (0, 0))


_DER: list[bytes] = []


def _certificate() -> bytes:
    """A real certificate, DER, from the test CA (made once; no file kept)."""
    if not _DER:
        import tempfile
        from pathlib import Path

        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        with tempfile.TemporaryDirectory(prefix="vwv-fuzz-") as directory:
            leaf = TestCA(Path(directory)).issue("chat.test")
            cert = x509.load_pem_x509_certificates(leaf.cert_path.read_bytes())[0]
        _DER.append(cert.public_bytes(Encoding.DER))
    return _DER[0]


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None)
@given(st.data())
def test_tls_certificate_summary_never_raises(data: st.DataObject) -> None:
    from probe.checks.tls import _summary

    der = data.draw(st.one_of(st.binary(max_size=300), mutated([_certificate()])))
    summary = _summary(der)
    assert summary is None or "sha256" in summary


# --- whole checks against a responder that sends random bytes -----------------------------


def _run_check(check: Any, spec: dict[str, Any], reply: bytes, transport: str) -> Observation:
    async def scenario() -> Observation:
        responder = (hostile.udp_responder if transport == "udp" else hostile.tcp_responder)
        kwargs = {} if transport == "udp" else {"close_after": True}
        async with responder(lambda request: [reply], **kwargs) as server:
            endpoint = ENDPOINT_ADAPTER.validate_python(
                {"host": "127.0.0.1", "port": server.port, "transport": transport,
                 "role": "call", **spec})
            return await check.run(endpoint, Context(timeout=0.15))
    return asyncio.run(scenario())


@SLOW
@given(reply=network_bytes([*STUN_TEMPLATES, SIP_TEMPLATE]),
       transport=st.sampled_from(["udp", "tcp"]))
def test_checks_survive_random_answers(reply: bytes, transport: str) -> None:
    for check, spec in ((stun_check, {"check": "stun"}),
                        (turn_check, {"check": "turn", "username": "u", "password": "p"}),
                        (sip_check, {"check": "sip"})):
        observation = _run_check(check, spec, reply, transport)
        assert isinstance(observation, Observation)
        json.dumps(observation.evidence)
