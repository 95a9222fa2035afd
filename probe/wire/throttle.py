"""The session token a replayed packet carries, and the control's bit inversion.

Each datagram (or RFC 4571 frame on TCP) carries 12 bytes the reflector uses to
attribute it to a session, a flow and a sequence number:

    nonce (4, random) | masked (4) | tag (4)
    masked = (flow id, 1 byte | sequence, 3 bytes) XOR BLAKE2s(K, "pad" | nonce)[:4]
    tag    = BLAKE2s(K, "tag" | nonce | masked)[:4]

with K the session key the reflector handed out. All 12 bytes differ in every
packet and look random, so the token is no signature a classifier could key
on. Where it goes depends on the message, so that the VoIP flow stays exactly
what a real client sends:

- in an RTP packet, the last 12 bytes: where SRTP puts its authentication tag
  (RFC 3711 §3.1), random-looking there too;
- in a STUN message, the transaction id (RFC 8489 §5: 96 random bits).

The control flow is the same packet with every bit inverted except the token
(`invert`): a classifier sees noise, the reflector still reads the token. The
reflector looks for a token at both places (`find`).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

TOKEN_LEN = 12
KEY_LEN = 16
STUN_TOKEN_AT = 8  # the STUN transaction id: bytes 8..20 (RFC 8489 §5)
MAX_SEQ = (1 << 24) - 1
FLOW_NAMES = ("voip", "control")


def _mac(key: bytes, label: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(label + data, key=key, digest_size=4).digest()


def make_token(key: bytes, flow: int, seq: int, nonce: bytes | None = None) -> bytes:
    """The 12-byte token of packet `seq` of flow `flow` (0..255; see `flow_id`)."""
    if not 0 <= flow <= 255 or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"flow {flow} or sequence {seq} out of range")
    nonce = nonce if nonce is not None else os.urandom(4)
    plain = struct.pack("!I", (flow << 24) | seq)
    masked = bytes(a ^ b for a, b in zip(plain, _mac(key, b"pad", nonce), strict=True))
    return nonce + masked + _mac(key, b"tag", nonce + masked)


def read_token(key: bytes, token: bytes) -> tuple[int, int] | None:
    """(flow, seq) when `token` was made with `key`, else None."""
    if len(token) != TOKEN_LEN:
        return None
    nonce, masked, tag = token[:4], token[4:8], token[8:]
    if _mac(key, b"tag", nonce + masked) != tag:
        return None
    (value,) = struct.unpack("!I", bytes(a ^ b for a, b in zip(masked, _mac(key, b"pad", nonce),
                                                                 strict=True)))
    return value >> 24, value & MAX_SEQ


def flow_id(round_: int, control: bool) -> int:
    """Flow ids: two per round (VoIP even, control odd)."""
    return 2 * round_ + int(control)


def flow_name(flow: int) -> str:
    return FLOW_NAMES[flow & 1]


def token_position(packet: bytes, stun: bool) -> int:
    return STUN_TOKEN_AT if stun else len(packet) - TOKEN_LEN


def place(packet: bytes, token: bytes, stun: bool) -> bytes:
    """`packet` with its token slot (see the module docstring) set to `token`."""
    at = token_position(packet, stun)
    if at < 0 or at + TOKEN_LEN > len(packet):
        raise ValueError(f"a {len(packet)}-byte packet has no room for a token")
    return packet[:at] + token + packet[at + TOKEN_LEN:]


def invert(packet: bytes, stun: bool) -> bytes:
    """Every bit of `packet` inverted, except the token's 12 bytes."""
    at = token_position(packet, stun)
    flipped = bytes(b ^ 0xFF for b in packet)
    return flipped[:at] + packet[at:at + TOKEN_LEN] + flipped[at + TOKEN_LEN:]


@dataclass(frozen=True)
class Attributed:
    flow: int
    seq: int


def find(key: bytes, packet: bytes) -> Attributed | None:
    """The token in `packet` (at the end, or in a STUN transaction id) if `key` made it."""
    positions = [len(packet) - TOKEN_LEN]
    if len(packet) >= STUN_TOKEN_AT + TOKEN_LEN and positions[0] != STUN_TOKEN_AT:
        positions.append(STUN_TOKEN_AT)
    for at in positions:
        if at < 0:
            continue
        found = read_token(key, packet[at:at + TOKEN_LEN])
        if found is not None:
            return Attributed(*found)
    return None
