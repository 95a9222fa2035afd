"""Traffic profiles: a schedule has the shape of a call, the same in every
profile, and its packets are what they claim to be on the wire."""

from __future__ import annotations

import random
import struct

import pytest

from probe.catalogue import parse_catalogue
from probe.checks.throttle.check import ROUNDS, round_bytes
from probe.core.errors import UserError
from probe.wire import profiles
from probe.wire.profiles import MEDIA_SECONDS, PROFILES, Kind, build


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_schedule_shape(name: str) -> None:
    profile = PROFILES[name]
    schedule = build(profile, 1.0, random.Random(0))
    stun = [p for p in schedule.packets if p.kind is Kind.STUN]
    audio = [p for p in schedule.packets if p.kind is Kind.AUDIO]
    bursts = [p for p in schedule.packets if p.kind is Kind.BURST]
    assert [p.at for p in stun] == [i * 0.05 for i in range(profile.stun_checks)]
    assert schedule.media_start == pytest.approx(profile.stun_checks * 0.05)
    # 20 ms audio frames from the media start, a burst in the middle of each slice
    assert [round(p.at - schedule.media_start, 3) for p in audio] == \
        [round(i * 0.02, 3) for i in range(50)]
    assert len(bursts) == 10 * profile.burst_packets
    assert {round((p.at - schedule.media_start) % 0.1, 3) for p in bursts} == {0.05}
    assert all(p.size == profile.burst_bytes for p in bursts)
    assert [p.seq for p in schedule.packets] == list(range(len(schedule.packets)))
    assert [p.at for p in schedule.packets] == sorted(p.at for p in schedule.packets)
    assert schedule.slices == 10


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_rtp_headers(name: str) -> None:
    profile = PROFILES[name]
    audio = [p for p in build(profile, 0.2, random.Random(1)).packets if p.kind is Kind.AUDIO]
    first, second, pt_byte = audio[0].template, audio[1].template, audio[0].template[1]
    assert first[0] >> 6 == 2  # RTP version 2 (RFC 3550 §5.1)
    assert pt_byte & 0x7F == profile.audio_pt
    assert bool(first[0] & 0x10) == (profile.extension_profile is not None)
    if profile.extension_profile is not None:
        assert struct.unpack_from("!H", first, 12)[0] == profile.extension_profile
    seq1, ts1, ssrc1 = struct.unpack_from("!HII", first, 2)
    seq2, ts2, ssrc2 = struct.unpack_from("!HII", second, 2)
    assert seq2 == (seq1 + 1) & 0xFFFF and ssrc1 == ssrc2
    assert ts2 - ts1 == profile.clock_rate * profile.ptime_ms // 1000
    low, high = profile.audio_bytes
    header = 12 + (8 if profile.extension_profile is not None else 0)
    assert all(low <= len(p.template) - header - 12 <= high for p in audio)


def test_offered_rate_is_what_the_schedule_sends() -> None:
    profile = PROFILES["webrtc"]
    schedule = build(profile, 10.0, random.Random(2))
    media = sum(p.size for p in schedule.packets if p.kind is not Kind.STUN)
    assert media * 8 / 10.0 / 1000 == pytest.approx(profile.offered_kbit, rel=0.03)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_data_budget_per_service(name: str) -> None:
    """The project's targets: at most 1 MB per service, confirmation round included."""
    assert ROUNDS * round_bytes(PROFILES[name], MEDIA_SECONDS) <= 1_000_000


def test_unknown_profile_is_a_catalogue_error() -> None:
    text = ("version: 1\nservices:\n  - id: x\n    name: X\n    endpoints:\n"
            "      - {check: throttle, url: 'https://c.example.org', port: 3478, "
            "profile: skipe, role: call}\n")
    with pytest.raises(UserError) as caught:
        parse_catalogue(text, "c.yaml")
    assert "c.yaml:6:" in str(caught.value)
    assert "unknown profile 'skipe'" in str(caught.value)
    with pytest.raises(LookupError, match="unknown throttle profile"):
        profiles.get("skipe")


def test_tls_is_a_catalogue_error() -> None:
    text = ("version: 1\nservices:\n  - id: x\n    name: X\n    endpoints:\n"
            "      - {check: throttle, url: 'https://c.example.org', port: 443, "
            "transport: tls, profile: whatsapp, role: call}\n")
    with pytest.raises(UserError, match="replays over udp or tcp, not tls"):
        parse_catalogue(text, "c.yaml")
