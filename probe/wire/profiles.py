"""Call traffic per service: what the VoIP flow of a throttle test looks like.

A profile is the shape of the first seconds of a call: ICE connectivity checks
(STUN Binding requests with the ICE attributes, RFC 8445 §7.2.2 and RFC 8489),
then RTP (RFC 3550) audio in 20 ms frames of the codec's sizes, plus short
bursts of large packets every `burst_period_ms`, the way a call probes the
available rate (WebRTC's probe clusters) and carries video frames. The sizes
and payload types are published facts about each app (see `sources`); the
payloads are random bytes, as encrypted media (SRTP, RFC 3711) look. The
schedule is the same for every profile, so results compare across services.

Profiles are synthetic, not recorded traffic (Wehe replays recordings):
docs/throttle.md says what that gains and what it may miss.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass, field
from enum import StrEnum

from aioice.stun import Class, Message, Method

from probe.wire.throttle import TOKEN_LEN

RTP_HEADER = 12
MEDIA_SECONDS = 2.0  # one round of media; the bench justifies it (docs/throttle.md)


class Kind(StrEnum):
    STUN = "stun"
    AUDIO = "audio"
    BURST = "burst"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    sources: tuple[str, ...] = ()
    stun_checks: int = 3  # ICE Binding requests before media (0: plain RTP, e.g. SIP)
    stun_interval_ms: float = 50.0  # RFC 8445 §14.2: Ta of 50 ms
    ptime_ms: int = 20
    clock_rate: int = 48000
    audio_pt: int = 111
    audio_bytes: tuple[int, int] = (60, 120)  # codec frame sizes (bytes), uniform
    extension_profile: int | None = 0xBEDE  # RFC 8285 one-byte header extensions
    burst_pt: int = 96
    burst_period_ms: int = 100
    burst_packets: int = 3
    burst_bytes: int = 900  # UDP payload of each burst packet

    @property
    def offered_kbit(self) -> float:
        """Mean rate of the media phase, UDP payload only (one flow, one direction)."""
        audio = (sum(self.audio_bytes) / 2 + RTP_HEADER + TOKEN_LEN
                 + (8 if self.extension_profile is not None else 0)) * 1000 / self.ptime_ms
        bursts = self.burst_packets * self.burst_bytes * 1000 / self.burst_period_ms
        return (audio + bursts) * 8 / 1000


_WEBRTC = ("RFC 7874 (WebRTC audio: Opus), RFC 7587 (Opus RTP, dynamic payload type), "
           "RFC 8285 (header extensions, 0xBEDE)",)

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("webrtc", "a WebRTC call: ICE checks, Opus in 20 ms frames (PT 111), VP8 bursts",
            _WEBRTC),
    Profile("whatsapp", "WhatsApp: STUN to its relay, then RTP with its own header "
            "extension profile 0xDEBE and payload type 120",
            ("wacrg.org/transport/warp-stun-relay (reconstruction, 'probable'): RTP first byte "
             "0x90, payload types 120/121, header extension profile 0xDEBE",
             "webrtchacks.com/?p=2228 (2015 capture): SRTP media after STUN to relays"),
            audio_pt=120, audio_bytes=(40, 90), extension_profile=0xDEBE),
    Profile("facebook-messenger", "Messenger: a WebRTC call (Opus PT 111)", _WEBRTC),
    Profile("signal", "Signal: RingRTC, a WebRTC stack (Opus PT 111)",
            ("github.com/signalapp/ringrtc (built on WebRTC)", *_WEBRTC)),
    Profile("google-meet", "Google Meet: a WebRTC call (Opus PT 111)", _WEBRTC),
    Profile("teams", "Microsoft Teams: ICE to the transport relays, RTP audio (generic "
            "WebRTC-like sizes; codec framing not verified)",
            ("Citrix PoC guide: Teams relays on UDP 3478-3481",)),
    Profile("facetime", "FaceTime: ICE, then RTP (generic sizes; framing not verified)",
            ("support.apple.com/en-us/103229: UDP 3478-3497, 16384-16387, 16393-16402",)),
    Profile("zoom", "Zoom: media over UDP 8801 (generic RTP-like sizes; Zoom's own "
            "framing is not imitated)",
            ("Zoom firewall rules: UDP 8801-8810",), stun_checks=0),
    Profile("sip", "a SIP call: plain RTP, G.711 (PT 0, 160-byte frames), no ICE",
            ("RFC 3551 §4.5.14 (PCMU, 8000 Hz, 20 ms = 160 bytes)",),
            stun_checks=0, clock_rate=8000, audio_pt=0, audio_bytes=(160, 160),
            extension_profile=None, burst_pt=96),
)}
NAMES = tuple(sorted(PROFILES))


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise LookupError(f"unknown throttle profile {name!r} (known: {', '.join(NAMES)})") \
            from None


@dataclass(frozen=True)
class Packet:
    """One packet of the schedule: sent at `at` seconds, the same `seq` in both flows."""

    seq: int
    at: float
    kind: Kind
    size: int
    burst: int = -1  # which burst, for bursts
    template: bytes = b""  # RTP packets: everything but the token (zeros at the end)


@dataclass
class Schedule:
    profile: Profile
    media_start: float
    media_seconds: float
    packets: list[Packet] = field(default_factory=list)

    @property
    def slice_seconds(self) -> float:
        return self.profile.burst_period_ms / 1000

    @property
    def slices(self) -> int:
        return round(self.media_seconds / self.slice_seconds)

    def payload_bytes(self) -> int:
        return sum(p.size for p in self.packets)


def build(profile: Profile, media_seconds: float = MEDIA_SECONDS,
          rng: random.Random | None = None) -> Schedule:
    """The packets of one round, in send order."""
    rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
    packets: list[Packet] = []
    for index in range(profile.stun_checks):
        packets.append(Packet(len(packets), index * profile.stun_interval_ms / 1000, Kind.STUN,
                              0))
    start = profile.stun_checks * profile.stun_interval_ms / 1000
    rtp = _Rtp(profile, rng)
    events: list[tuple[float, int, Kind, int]] = []
    ptime = profile.ptime_ms / 1000
    for frame in range(round(media_seconds / ptime)):
        events.append((start + frame * ptime, 1, Kind.AUDIO, frame))
    period = profile.burst_period_ms / 1000
    for burst in range(round(media_seconds / period)):
        # mid-slice: a burst stays inside its slice despite some delay variation
        events.append((start + burst * period + period / 2, 0, Kind.BURST, burst))
    for at, _, kind, number in sorted(events):
        if kind is Kind.AUDIO:
            size = rng.randint(*profile.audio_bytes)
            template = rtp.packet(profile.audio_pt, size, marker=number == 0,
                                  advance=profile.clock_rate * profile.ptime_ms // 1000)
            packets.append(Packet(len(packets), at, kind, len(template), template=template))
        else:
            for part in range(profile.burst_packets):
                body = profile.burst_bytes - RTP_HEADER - TOKEN_LEN - rtp.extension_len
                template = rtp.packet(profile.burst_pt, body,
                                      marker=part == profile.burst_packets - 1, advance=0,
                                      video=True)
                packets.append(Packet(len(packets), at, kind, len(template), number, template))
    return Schedule(profile, start, media_seconds, packets)


class _Rtp:
    """RTP headers (RFC 3550 §5.1): random SSRC, sequence and timestamp starts."""

    def __init__(self, profile: Profile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self.ssrc = {False: rng.getrandbits(32), True: rng.getrandbits(32)}
        self.seq = {False: rng.getrandbits(16), True: rng.getrandbits(16)}
        self.ts = {False: rng.getrandbits(32), True: rng.getrandbits(32)}

    @property
    def extension_len(self) -> int:
        return 8 if self.profile.extension_profile is not None else 0

    def packet(self, pt: int, body: int, *, marker: bool, advance: int,
               video: bool = False) -> bytes:
        ext = self.profile.extension_profile is not None
        first = 0x80 | (0x10 if ext else 0)
        header = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt,
                             self.seq[video], self.ts[video], self.ssrc[video])
        self.seq[video] = (self.seq[video] + 1) & 0xFFFF
        self.ts[video] = (self.ts[video] + advance) & 0xFFFFFFFF
        if ext:  # one word: an audio-level element (RFC 6464) and padding
            header += struct.pack("!HHBBH", self.profile.extension_profile, 1, 0x10,
                                  self.rng.getrandbits(7), 0)
        return header + self.rng.randbytes(body) + bytes(TOKEN_LEN)


def stun_check(token: bytes, rng: random.Random) -> bytes:
    """An ICE connectivity check (RFC 8445 §7.2.2): a Binding request whose
    transaction id is the token, with USERNAME, PRIORITY, ICE-CONTROLLING,
    MESSAGE-INTEGRITY and FINGERPRINT (RFC 8489 §14.5, §14.7)."""
    message = Message(Method.BINDING, Class.REQUEST, transaction_id=token)
    ufrag = rng.randbytes(6).hex()
    message.attributes["USERNAME"] = f"{ufrag[:8]}:{ufrag[4:]}"
    message.attributes["PRIORITY"] = (110 << 24) | (rng.getrandbits(16) << 8) | 255
    message.attributes["ICE-CONTROLLING"] = rng.getrandbits(64)
    message.add_message_integrity(rng.randbytes(16))
    message.add_fingerprint()
    return bytes(message)
