"""Every parser of network input, as fuzz targets: bytes in, and only the
exception its caller handles may come out. Anything else escaping is a bug
(the fuzzer reports the input). Used by tests/test_fuzz.py (a short run of
a mutation fuzzer) and bench/fuzz.py (atheris, 1,000,000 inputs each).

Targets: STUN, TURN (the check's matchers and its allocation reading), SIP,
DNS answers (dnspython's parser and what the probe reads of them), SDP (the
candidate readers and the reference peer's filter), the ingest body (strict
batch parse, then the per-record checks the collector makes).
"""

from __future__ import annotations

import contextlib
import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

DATA = Path(__file__).resolve().parent.parent / "data"
TXID = bytes(range(12))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# --- STUN and TURN --------------------------------------------------------------------


def stun(data: bytes) -> None:
    from probe.checks import stun as check
    from probe.core.record import Transport
    from probe.net.flow import Mismatch, Transaction
    from probe.wire import stun as wire

    for parse in (wire.parse, wire.parse_channel_data,
                  lambda d: wire.frame_length(d, channels={0x4001}), wire.frame_length):
        with contextlib.suppress(ValueError):
            parse(data)
    wire.is_channel_data(data)
    try:
        message, _ = check.match(data, [TXID])
    except ValueError as exc:
        outcome: Transaction[Any] = Transaction()
        outcome.note("mismatch" if isinstance(exc, Mismatch) else "malformed", exc)
        check.observe(outcome, ("127.0.0.1", 4000), "192.0.2.1", Transport.UDP)
        return
    reply = Transaction(ended="reply", reply=message, attempts=[{"sent_ms": 0.0}])
    observation = check.observe(reply, ("192.0.2.7", 4000), "192.0.2.1", Transport.UDP)
    json.dumps(observation.evidence)


_KEY: list[bytes] = []


def turn(data: bytes) -> None:
    from aioice.stun import Class, Message, Method

    from probe.checks import turn as check
    from probe.core.errors import StepFailed
    from probe.core.record import Transport
    from probe.net.flow import Flow
    from probe.wire import stun as wire

    if not _KEY:
        _KEY.append(wire.long_term_key("u", "realm", "p"))
    flow = types.SimpleNamespace(local=("192.0.2.7", 4000), address="192.0.2.1",
                                 transport=Transport.UDP, datagram=True)
    session = check.Session(cast(Flow, flow), 1.0, 0.0, {0x4001})
    session.sent_ids.add(b"\x01" * 12)
    session.key = _KEY[0]
    request = Message(Method.ALLOCATE, Class.REQUEST, transaction_id=TXID)
    for match in (lambda d: session.match_response(request, d),
                  lambda d: session.match_data(("192.0.2.9", 7), b"token", d),
                  lambda d: session.match_channel(0x4001, b"token", b"old", d)):
        try:
            matched = match(data)
        except ValueError:
            continue
        if matched is not None and isinstance(matched[0], Message):
            reply = matched[0]
            reply.check_message_integrity(_KEY[0])
            with contextlib.suppress(StepFailed):
                session.allocation(reply)
            session.error_response("allocate", reply)
    json.dumps(session.evidence())


# --- SIP ------------------------------------------------------------------------------


def sip(data: bytes) -> None:
    from probe.checks import sip as check
    from probe.core.record import Transport
    from probe.net.flow import Transaction
    from probe.wire import sip as wire

    with contextlib.suppress(ValueError):
        wire.frame_length(data)
    with contextlib.suppress(ValueError):
        wire.parse_via(_text(data))
    sent = check.Sent("udp", ("192.0.2.7", 5060))
    sent.branch, sent.call_id = "z9hG4bKabc", "x@192.0.2.7"
    try:
        response, _ = sent.match(data)
    except ValueError:
        return
    outcome = Transaction(ended="reply", reply=response, attempts=[{"sent_ms": 0.0}])
    json.dumps(check.observe(outcome, sent, [], Transport.UDP).evidence)


# --- DNS ------------------------------------------------------------------------------


def dns(data: bytes) -> None:
    import dns.exception
    import dns.message
    import dns.rdatatype

    from probe.checks import dns as check
    from probe.core.errors import DnsError
    from probe.dns.query import _answer

    try:  # as probe.dns.query reads an answer: DNSException and ValueError are handled
        message = dns.message.from_wire(data, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError):
        return
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = _answer(message, rdtype, "192.0.2.53:53", 1.0, 1, (0, 0))
        except DnsError:
            continue
        evidence: dict[str, Any] = {}
        check._withhold(answer, lambda a: check.is_bogon(a) is False, evidence)
        check._judge(answer.addresses, evidence, None)
        json.dumps(evidence)


# --- SDP ------------------------------------------------------------------------------


def sdp(data: bytes) -> None:
    from collector.webrtc_peer import BadOffer, filter_candidates, reached_host_only
    from probe.wire import sdp as wire

    text = _text(data)
    wire.sdp_candidates(text)
    wire.candidate_counts(text)
    wire.reachable_candidate(text, "192.0.2.1")
    for allow in (False, True):
        with contextlib.suppress(BadOffer):
            filtered = filter_candidates(text, allow, 32)
            wire.candidate_counts(filtered)
            for reached in ("192.0.2.1", "::ffff:192.0.2.1", None):
                narrowed = reached_host_only(filtered, reached)
                assert set(narrowed.splitlines()) <= set(filtered.splitlines())


# --- the ingest body ------------------------------------------------------------------

_INGESTOR: list[Any] = []


def ingest(data: bytes) -> None:
    from collector.batch import MalformedBody, TooManyItems, parse_batch
    from collector.ingest import Ingestor, Rejected, _signed_bytes

    if not _INGESTOR:
        from collector.settings import Settings

        settings = Settings(data_dir=Path("/nonexistent"), geoip_builtin=False,
                            max_record_age_days=0, max_clock_skew_seconds=0)
        _INGESTOR.append(Ingestor(settings, cast(Any, None), cast(Any, None), cast(Any, None)))
    try:
        elements = parse_batch(data, 1000)
    except (MalformedBody, TooManyItems):
        return
    for element in elements:
        try:
            _INGESTOR[0]._check_shape(element)
        except Rejected:
            continue
        _signed_bytes(element)  # what the signature check verifies


TARGETS: dict[str, Callable[[bytes], None]] = {
    "stun": stun, "turn": turn, "sip": sip, "dns": dns, "sdp": sdp, "ingest": ingest}


# --- seeds ----------------------------------------------------------------------------


def seeds(name: str) -> list[bytes]:
    """Real messages to mutate, from the golden vectors and a few built here."""
    out: list[bytes] = []
    if name in ("stun", "turn"):
        from aioice.stun import Class, Message, Method

        from probe.wire import stun as wire

        out += [bytes.fromhex(p.read_text().split("#")[0].replace("\n", "").replace(" ", ""))
                for p in sorted((DATA / "stun").glob("*.hex"))]
        binding = Message(Method.BINDING, Class.RESPONSE, transaction_id=TXID, attributes={
            "XOR-MAPPED-ADDRESS": ("192.0.2.1", 4000), "SOFTWARE": "seed",
            "ERROR-CODE": (401, "Unauthorized"), "REALM": "realm", "NONCE": b"nonce",
            "LIFETIME": 600, "XOR-RELAYED-ADDRESS": ("2001:db8::1", 5000)})
        allocated = Message(Method.ALLOCATE, Class.RESPONSE, transaction_id=TXID, attributes={
            "XOR-MAPPED-ADDRESS": ("192.0.2.7", 4000), "LIFETIME": 600,
            "XOR-RELAYED-ADDRESS": ("192.0.2.9", 5000)})
        allocated.add_message_integrity(wire.long_term_key("u", "realm", "p"))
        out += [bytes(binding), bytes(allocated), wire.channel_data(0x4001, b"token", pad=True)]
    elif name == "sip":
        out += [p.read_bytes() for p in sorted((DATA / "sip").glob("*.response"))]
        out.append(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKabc;"
                   b"rport=5060;received=192.0.2.7\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>"
                   b";tag=2\r\nCall-ID: x@192.0.2.7\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0"
                   b"\r\n\r\n")
    elif name == "dns":
        out += [p.read_bytes() for p in sorted((DATA / "dns").glob("answer-*.bin"))]
    elif name == "sdp":
        out.append(b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF "
                   b"111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 "
                   b"192.168.1.7 50000 typ host\r\na=candidate:2 1 udp 1686052607 "
                   b"198.51.100.9 50001 typ srflx raddr 192.168.1.7 rport 50000\r\n"
                   b"a=candidate:3 1 udp 2122260223 abc.local 50002 typ host\r\n"
                   b"a=candidate:4 1 udp 41885439 8.8.8.8 3478 typ relay\r\n")
    elif name == "ingest":
        from probe.core.signing import ProbeKey

        key = ProbeKey.generate()
        record = key.sign({
            "schema": "voipwatch.measurement/1", "id": "5b0f1a8e-2c4d-4c1e-9f0a-0b1c2d3e4f50",
            "started_at": "2016-01-07T00:00:00Z", "runtime_ms": 12,
            "probe": {"key_id": key.key_id, "software_version": "0.1.0"},
            "network": {"link_type": "cellular"}, "service": "chat",
            "endpoint": {"check": "tcp", "host": "192.0.2.7", "port": 443, "transport": "tcp",
                         "role": "call"},
            "verdict": "open", "blocking": None, "evidence": {"rtt": [0.1, 1e-7], "n": "é"}})
        text = json.dumps(record, ensure_ascii=False).encode()
        out += [b"[" + text + b"]", b"[" + text + b"," + text + b"]", b"[]", b"[{}]"]
    return out or [os.urandom(16)]
