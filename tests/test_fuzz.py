"""Every network parser fuzzed (issue 13): STUN, TURN, SIP, DNS answers, SDP,
the ingest body. A short run here (the mutation fuzzer, tests/support/fuzzer.py);
`bench/fuzz.py` runs 1,000,000 inputs per parser with atheris. No exception
may escape but the one each parser's caller handles."""

from __future__ import annotations

import os

import pytest

from tests.support import fuzzer
from tests.support.fuzz_targets import TARGETS, seeds

INPUTS = int(os.environ.get("VOIPWATCH_FUZZ_INPUTS", "5000"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_exception_escapes(name: str) -> None:
    stats = fuzzer.run(TARGETS[name], seeds(name), INPUTS)
    assert stats.inputs >= INPUTS
    assert not stats.findings, f"{len(stats.findings)} escaping exceptions; first:\n" \
                               f"{stats.findings[0].data!r}\n{stats.findings[0].error}"


def test_a_dns_answer_of_another_class_gives_no_address() -> None:
    """Found by this fuzzer: a CH-class "A" record (`\\# 4 c6336407` as text)
    was taken for an address and crashed the dns check."""
    import dns.message
    import dns.rdatatype

    from probe.dns.query import _answer

    # the fuzzer's input: a CNAME, then an A record of class 5 (dnspython: generic rdata)
    wire = (b"\x124\x81\x00\x00\x01\x00\x02\x00\x00\x00\x00\x04chat\x05lumen\x03lab\x00"
            b"\x00\x01\x00\x01\xc0\x0c\x00\x05\x00\x01\x00\x00\x01,\x00\x0b\x04edge\x03cdn"
            b"\xc0\x17\xc0,\x00\x01\x00\x05\x00\x00\x00<\x00\x04\xc63d\x07")
    answer = _answer(dns.message.from_wire(wire), dns.rdatatype.A, "r", 1.0, 1, (0, 0))
    assert answer.addresses == [] and answer.cnames == ["edge.cdn.lab"]
