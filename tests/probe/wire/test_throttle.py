"""The per-packet token: attributable by its session's key only, different in
every packet, and kept intact when the control inverts everything else."""

from __future__ import annotations

import os
import random
import struct

import pytest

from probe.wire import stun as stunmsg
from probe.wire import throttle as wire
from probe.wire.profiles import PROFILES, build, stun_check

KEY = bytes(range(16))


def test_token_round_trip_and_other_keys() -> None:
    token = wire.make_token(KEY, wire.flow_id(1, True), 123456)
    assert len(token) == wire.TOKEN_LEN
    assert wire.read_token(KEY, token) == (3, 123456)
    assert wire.read_token(os.urandom(16), token) is None
    tampered = token[:5] + bytes([token[5] ^ 1]) + token[6:]
    assert wire.read_token(KEY, tampered) is None


def test_tokens_look_random_and_never_repeat() -> None:
    """No fixed bytes a classifier could key on: the same flow and sequence
    number give a new token every time, and no byte position is constant."""
    tokens = [wire.make_token(KEY, 0, seq) for seq in range(200)]
    assert len(set(tokens)) == 200
    for position in range(wire.TOKEN_LEN):
        assert len({t[position] for t in tokens}) > 50
    assert wire.make_token(KEY, 0, 7) != wire.make_token(KEY, 0, 7)


@pytest.mark.parametrize("flow, seq", [(-1, 0), (256, 0), (0, -1), (0, wire.MAX_SEQ + 1)])
def test_out_of_range(flow: int, seq: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        wire.make_token(KEY, flow, seq)


def test_rtp_token_sits_where_srtp_puts_its_tag_and_survives_inversion() -> None:
    schedule = build(PROFILES["webrtc"], 0.2, random.Random(1))
    template = next(p for p in schedule.packets if p.kind == "audio").template
    token = wire.make_token(KEY, 0, 9)
    voip = wire.place(template, token, stun=False)
    assert voip.endswith(token) and voip[:-12] == template[:-12]
    control = wire.invert(voip, stun=False)
    assert control[-12:] == token
    assert bytes(b ^ 0xFF for b in control[:-12]) == voip[:-12]
    assert wire.find(KEY, voip) == wire.Attributed(0, 9)
    assert wire.find(KEY, control) == wire.Attributed(0, 9)
    assert control[0] >> 6 != 2  # no longer RTP version 2


def test_stun_token_is_the_transaction_id_and_the_control_loses_the_cookie() -> None:
    token = wire.make_token(KEY, 1, 2)
    message = stun_check(token, random.Random(3))
    parsed = stunmsg.parse(message)  # a valid Binding request: cookie, length, FINGERPRINT
    assert parsed.transaction_id == token
    assert wire.find(KEY, message) == wire.Attributed(1, 2)
    control = wire.invert(message, stun=True)
    assert control[8:20] == token
    assert struct.unpack_from("!I", control, 4)[0] != stunmsg.COOKIE  # what DPI matches
    assert wire.find(KEY, control) == wire.Attributed(1, 2)


def test_a_packet_too_short_for_a_token() -> None:
    with pytest.raises(ValueError, match="no room"):
        wire.place(b"short", bytes(12), stun=False)
    assert wire.find(KEY, b"") is None
    assert wire.find(KEY, os.urandom(40)) is None
