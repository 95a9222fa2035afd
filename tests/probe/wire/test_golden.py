"""The codecs on golden wire vectors (tests/data/README.md), no daemon needed:
RFC 5769's STUN samples, SIP responses captured from Kamailio (and one in
another server's style), DNS messages."""

from __future__ import annotations

import json
from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import pytest

from probe.checks.sip import Sent
from probe.core.errors import DnsError, Mismatch
from probe.core.failures import Failure
from probe.dns.query import _answer
from probe.wire import sip as sipmsg
from probe.wire import stun as stunmsg

DATA = Path(__file__).resolve().parents[2] / "data"
SHORT_TERM = b"VOkJxbRl1RmTxUk/WvJxBt"  # RFC 5769 section 2, the first three vectors
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def stun_vector(name: str) -> bytes:
    text = (DATA / "stun" / f"rfc5769-{name}.hex").read_text()
    return bytes.fromhex(" ".join(line for line in text.splitlines()
                                  if not line.startswith("#")))


def test_rfc5769_sample_request() -> None:
    data = stun_vector("2.1-request")
    message = stunmsg.parse(data)  # its FINGERPRINT is checked
    assert (message.message_method.name, message.message_class.name) == ("BINDING", "REQUEST")
    assert message.transaction_id == TXID
    assert message.attributes["SOFTWARE"] == "STUN test client"
    assert message.attributes["USERNAME"] == "evtj:h6vY"
    assert message.attributes["PRIORITY"] == 0x6E0001FF
    assert message.check_message_integrity(SHORT_TERM)
    assert not message.check_message_integrity(b"wrong password")
    assert stunmsg.frame_length(data) == len(data)


@pytest.mark.parametrize("name,mapped", [
    ("2.2-ipv4-response", ("192.0.2.1", 32853)),
    ("2.3-ipv6-response", ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
])
def test_rfc5769_sample_responses(name: str, mapped: tuple[str, int]) -> None:
    data = stun_vector(name)
    message = stunmsg.parse(data)
    assert message.message_class.name == "RESPONSE" and message.transaction_id == TXID
    assert message.attributes["XOR-MAPPED-ADDRESS"] == mapped
    assert message.attributes["SOFTWARE"] == "test vector"
    assert message.check_message_integrity(SHORT_TERM)
    assert stunmsg.frame_length(data + b"\x00\x01") == len(data)  # the next message follows


def test_rfc5769_long_term_request() -> None:
    message = stunmsg.parse(stun_vector("2.4-long-term-request"))
    username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    assert message.attributes["USERNAME"] == username
    assert message.attributes["REALM"] == "example.org"
    assert message.attributes["NONCE"] == b"f//499k954d6OL34oL9FSTvy64sA"
    key = stunmsg.long_term_key(username, "example.org", "TheMatrIX")
    assert message.check_message_integrity(key)
    assert not message.check_message_integrity(
        stunmsg.long_term_key(username, "example.org", "TheMatrix"))


@pytest.mark.parametrize("name", ["2.1-request", "2.2-ipv4-response", "2.3-ipv6-response"])
def test_a_flipped_bit_breaks_the_fingerprint(name: str) -> None:
    data = bytearray(stun_vector(name))
    data[-1] ^= 1
    with pytest.raises(ValueError, match="fingerprint"):
        stunmsg.parse(bytes(data))


def test_a_wrong_cookie_is_a_bad_cookie() -> None:
    data = bytearray(stun_vector("2.2-ipv4-response"))
    data[4] ^= 0xFF
    with pytest.raises(stunmsg.BadCookie):
        stunmsg.parse(bytes(data))


def kamailio(transport: str) -> tuple[Sent, bytes]:
    base = DATA / "sip" / f"kamailio-options-{transport}"
    meta = json.loads(base.with_suffix(".json").read_text())
    sent = Sent(transport, (meta["local"][0], meta["local"][1]))
    sent.branch, sent.from_tag, sent.call_id = meta["branch"], meta["from_tag"], meta["call_id"]
    sent.data = base.with_suffix(".request").read_bytes()
    return sent, base.with_suffix(".response").read_bytes()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_answers_as_captured(transport: str) -> None:
    sent, data = kamailio(transport)
    response, _ = sent.match(data)
    assert (response.status, response.reason, response.cseq) == (200, "OK", (1, "OPTIONS"))
    assert (response.get("server") or "").startswith("kamailio")
    assert sent.rewrites(response) == [] and sent.nat(response) is False
    assert sipmsg.frame_length(data + b"SIP/2.0 ") == len(data)
    with pytest.raises(Mismatch, match="reflected"):
        sent.match(sent.data)


def test_an_alg_rewrite_is_seen() -> None:
    sent, data = kamailio("udp")
    host, port = sent.local
    rewritten = data.replace(f"{host}:{port};".encode(), b"203.0.113.9:5060;", 1) \
        .replace(f"@{host}".encode(), b"@203.0.113.9")
    response, _ = sent.match(rewritten)
    assert sent.rewrites(response) == ["via.sent-by", "call-id"]


def test_compact_and_folded_headers() -> None:
    response = sipmsg.parse_response((DATA / "sip" / "compact-folded-404.response").read_bytes())
    assert (response.status, response.cseq) == (404, (1, "OPTIONS"))
    assert len(response.vias) == 2
    via = sipmsg.parse_via(response.vias[0])
    assert (via.host, via.port, via.params["branch"]) == (
        "127.0.0.1", 41184, "z9hG4bK0123456789abcdef0123")
    assert response.get("call-id") == "0123456789abcdef01234567@127.0.0.1"
    assert response.get("user-agent") == "Example Softswitch 2.1"


def dns_answer(name: str) -> dns.message.Message:
    return dns.message.from_wire((DATA / "dns" / f"{name}.bin").read_bytes())


def test_dns_query_and_answers() -> None:
    query = dns_answer("query-a")
    assert (query.id, str(query.question[0].name)) == (4660, "chat.lumen.lab.")
    for name in ("answer-a", "answer-bogon", "answer-empty", "answer-cname", "answer-nxdomain"):
        assert query.is_response(dns_answer(name))
    assert not query.is_response(dns_answer("answer-other-id"))
    answer = _answer(dns_answer("answer-a"), dns.rdatatype.A, "192.0.2.53:53", 1.0, 1, (0, 0))
    assert answer.rcode == "NOERROR"
    assert sorted(answer.addresses) == ["93.184.216.34", "93.184.216.35"]
    chained = _answer(dns_answer("answer-cname"), dns.rdatatype.A, "r", 1.0, 1, (0, 0))
    assert (chained.cnames, chained.addresses) == (["edge.cdn.lab"], ["198.51.100.7"])
    assert _answer(dns_answer("answer-empty"), dns.rdatatype.A, "r", 1.0, 1, (0, 0)).addresses == []


@pytest.mark.parametrize("name,failure", [
    ("answer-nxdomain", Failure.DNS_NXDOMAIN), ("answer-servfail", Failure.DNS_SERVFAIL),
    ("answer-refused", Failure.DNS_REFUSED),
])
def test_dns_rcodes_are_failures(name: str, failure: Failure) -> None:
    with pytest.raises(DnsError) as caught:
        _answer(dns_answer(name), dns.rdatatype.A, "r", 1.0, 1, (0, 0))
    assert caught.value.failure is failure and caught.value.answer is not None


def test_a_truncated_answer_says_so() -> None:
    data = (DATA / "dns" / "answer-truncated.bin").read_bytes()
    assert dns.message.from_wire(data).flags & dns.flags.TC
    with pytest.raises(dns.message.Truncated):
        dns.message.from_wire(data, raise_on_truncation=True)
