"""Call audio shared by the probe's `webrtc` check and the collector's reference
peer: a tone pre-encoded once per process as Opus packets (RFC 7587), sent by a
track that aiortc passes through as is (no encoder, resampler or encoding
thread per call), and a drain for the audio the other side sends.

The bitrate is a voice call's (Opus in VoIP mode at 32 kbit/s, 20 ms frames:
packets of about 80 bytes, as WhatsApp-, Signal- or Meet-like calls send),
so ten calls in a pass stay within the probe's traffic budget. Importing this
module is cheap; PyAV and aiortc are imported on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from typing import Any

OPUS_RATE = 48000
OPUS_FRAME = 960  # samples: 20 ms
FRAME_SECONDS = OPUS_FRAME / OPUS_RATE
TONE_FRAMES = 50  # one second of tone, then again
OPUS_BITRATE = 32000

_TONE: list[bytes] = []


def tone_packets() -> list[bytes]:
    """One second of a 440 Hz tone as Opus packets, encoded on first use. A tone,
    not silence: Opus sends silence as 3-byte packets, nothing like speech."""
    if not _TONE:
        import av

        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = OPUS_BITRATE
        codec.format = "s16"
        codec.layout = "stereo"
        codec.sample_rate = OPUS_RATE
        codec.options = {"application": "voip"}
        step = 2 * math.pi * 440 / OPUS_RATE
        for index in range(TONE_FRAMES + 1):  # one more: the encoder lags a frame
            start = index * OPUS_FRAME
            pcm = b"".join(struct.pack("<hh", sample, sample) for sample in (
                int(8000 * math.sin(step * (start + i))) for i in range(OPUS_FRAME)))
            frame = av.AudioFrame(format="s16", layout="stereo", samples=OPUS_FRAME)
            frame.planes[0].update(pcm)
            frame.sample_rate = OPUS_RATE
            frame.pts = start
            _TONE.extend(bytes(packet) for packet in codec.encode(frame))
        del _TONE[TONE_FRAMES:]
    return _TONE


def tone_track(gate: asyncio.Event | None = None) -> Any:
    """A new aiortc audio track sending the tone's packets every 20 ms; with a
    `gate`, only once it is set (the reference peer answers audio with audio)."""
    import fractions

    import av
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    packets = tone_packets()

    class ToneTrack(MediaStreamTrack):
        """Pre-encoded packets on the frame clock: aiortc's sender packs a
        track's packets as they are, with no encoder of its own."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.sent = 0
            self.began = 0.0

        async def recv(self) -> Any:
            if self.readyState != "live":
                raise MediaStreamError
            if self.sent == 0:
                if gate is not None:
                    await gate.wait()
                self.began = time.monotonic()
            else:
                await asyncio.sleep(self.began + self.sent * FRAME_SECONDS - time.monotonic())
            packet = av.Packet(packets[self.sent % len(packets)])
            packet.pts = self.sent * OPUS_FRAME
            packet.time_base = fractions.Fraction(1, OPUS_RATE)
            self.sent += 1
            return packet

    return ToneTrack()


async def drain(track: Any, heard: asyncio.Event | None = None) -> None:
    """Read and drop the decoded frames of a remote track until it ends: aiortc
    decodes every packet into a queue that only the track's reader empties, and
    unread it grows by about 1 MiB a second per call. `heard` is set on the first."""
    from aiortc.mediastreams import MediaStreamError

    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
            if heard is not None:
                heard.set()
