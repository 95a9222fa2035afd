"""STUN messages on the wire, safe on hostile input (RFC 8489 §5, §6.2.2, §14;
TURN ChannelData, RFC 8656 §12).

Encoding, the attribute table and attribute decoding are aioice's
(`aioice.stun.Message`, `parse_message`). Its parser was written for a
cooperating peer and falls short on input from a path that may be hostile, so
`parse` checks the message before handing it over:

- it checks neither the two leading zero bits nor the magic cookie (RFC 8489
  §5), which are what tells a STUN answer from noise or a forgery;
- an attribute that overruns the message is read as if it were shorter, and
  trailing bytes are ignored, where §14 requires a well-formed TLV list;
- a fixed-size attribute of the wrong size raises `struct.error`, not
  `ValueError`.

Framing on TCP/TLS and ChannelData have no parser in aioice.stun at all.
Every function here raises only `ValueError` on malformed input.
"""

from __future__ import annotations

import struct
from collections.abc import Container

from aioice.stun import COOKIE, HEADER_LENGTH, Message, padding_length, parse_message
from aioice.turn import make_integrity_key

from probe.core.errors import BadCookie

__all__ = ["COOKIE", "BadCookie", "Message", "channel_data", "frame_length",
           "is_channel_data", "long_term_key", "parse", "parse_channel_data"]

CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x4FFF  # RFC 8656 §12


def parse(data: bytes) -> Message:
    """Parse one STUN message (RFC 8489 §5, §14); FINGERPRINT, when present, is verified.

    MESSAGE-INTEGRITY is checked separately with `Message.check_message_integrity`."""
    if len(data) < HEADER_LENGTH:
        raise ValueError(f"STUN message of {len(data)} bytes is shorter than its header")
    message_type, length, cookie = struct.unpack_from("!HHI", data)
    if message_type & 0xC000:
        raise ValueError("not a STUN message: the two leading bits are not zero")
    if cookie != COOKIE:
        raise BadCookie(f"STUN magic cookie is 0x{cookie:08x}, not 0x{COOKIE:08x}")
    if length % 4:
        raise ValueError("STUN message length is not a multiple of 4")
    if len(data) != HEADER_LENGTH + length:
        raise ValueError(f"STUN header says {length} bytes of attributes, "
                         f"{len(data) - HEADER_LENGTH} came")
    position = HEADER_LENGTH
    while position < len(data):
        if position + 4 > len(data):
            raise ValueError("truncated STUN attribute header")
        attr_type, attr_length = struct.unpack_from("!HH", data, position)
        position += 4 + attr_length + padding_length(attr_length)
        if position > len(data):
            raise ValueError(f"STUN attribute 0x{attr_type:04x} overruns the message")
    try:
        return parse_message(data)
    except struct.error as exc:
        raise ValueError(f"malformed STUN attribute: {exc}") from exc


def is_channel_data(data: bytes) -> bool:
    """ChannelData starts with the bits 01, STUN with 00 (RFC 8656 §12)."""
    return bool(data) and data[0] & 0xC0 == 0x40


def frame_length(buffer: bytes, *, channels: Container[int] = ()) -> int | None:
    """Length of the first message in a TCP/TLS byte stream (RFC 8489 §6.2.2;
    RFC 8656 §12.5: ChannelData, padded to 4 bytes, only on the `channels` we
    bound), None until enough has come.

    Raises ValueError as soon as the stream cannot be what we expect, so
    garbage is recognised without waiting for more."""
    if not buffer:
        return None
    if buffer[0] & 0xC0 == 0x40:
        if len(buffer) < 4:
            return None
        channel, length = struct.unpack_from("!HH", buffer)
        if channel not in channels:
            raise ValueError(f"not STUN, nor ChannelData on a bound channel (0x{channel:04x})")
        return 4 + int(length) + padding_length(length)
    if buffer[0] & 0xC0:
        raise ValueError("not a STUN message: the two leading bits are not zero")
    if len(buffer) >= 8 and struct.unpack_from("!I", buffer, 4)[0] != COOKIE:
        raise BadCookie("STUN magic cookie mismatch in the stream")
    if len(buffer) < 4:
        return None
    length = int(struct.unpack_from("!H", buffer, 2)[0])
    if length % 4:
        raise ValueError("STUN message length is not a multiple of 4")
    return HEADER_LENGTH + length


def channel_data(channel: int, payload: bytes, *, pad: bool) -> bytes:
    """A ChannelData message (RFC 8656 §12.4); `pad` on TCP/TLS (§12.5)."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX or len(payload) > 0xFFFF:
        raise ValueError("channel number or payload out of range")
    return struct.pack("!HH", channel, len(payload)) + payload + (
        bytes(padding_length(len(payload))) if pad else b"")


def parse_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel number, application data) of a ChannelData message (RFC 8656 §12.4)."""
    if len(data) < 4:
        raise ValueError("ChannelData shorter than its 4-byte header")
    channel, length = struct.unpack_from("!HH", data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"ChannelData channel 0x{channel:04x} out of range")
    if 4 + length > len(data):
        raise ValueError("ChannelData length exceeds the message")
    return channel, data[4:4 + length]


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The long-term credential key, MD5(username:realm:password) (RFC 8489 §9.2.2)."""
    return make_integrity_key(username, realm, password)
