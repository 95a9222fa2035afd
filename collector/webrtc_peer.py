"""The WebRTC reference peer: the far end of the probe's `webrtc` check.

For each offer (non-trickle SDP, RFC 8829 §5.3, gathered completely, as aiortc
does) it creates one aiortc peer connection that answers, echoes every
data-channel message and sends audio back: the probe's own pre-encoded tone
(probe.wire.media, a voice call's 32 kbit/s), from the moment the probe's audio
reaches it, while the audio it receives is read and dropped. Echoing the
received audio would cost a decoder and an encoder per session, and aiortc's
encoder sends 96 kbit/s whatever the probe sent. The
number of live sessions is bounded (`PeerFull` when full) and each session is
closed after `lifetime` seconds, or as soon as its connection fails or the
probe hangs up. aiortc is imported on the first offer, not when the collector
starts: it weighs ~67 MB.

The ICE servers are the collector's own (settings `webrtc_ice_servers`), never
aiortc's implicit default (a public Google STUN server): an empty list means
host candidates only, right for a collector on a public address.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from probe.core.errors import MalformedMessage, VoipwatchError
from probe.wire.media import drain, tone_track
from probe.wire.sdp import candidate_counts

log = logging.getLogger("collector.webrtc")

class PeerFull(VoipwatchError):
    """Every session slot is taken; `retry_after` seconds until the oldest ends."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"all sessions busy; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class BadOffer(MalformedMessage):
    """The offer is not an SDP offer aiortc can answer; the message says why."""


@dataclass
class Session:
    id: int
    key_id: str
    started: float
    pc: Any
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.Task[None] | None = None
    echoed: int = 0
    drains: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class Answer:
    sdp: str
    session: int
    candidates: dict[str, int]
    lifetime: float


class PeerPool:
    """The live sessions of one collector process."""

    def __init__(self, ice_servers: Sequence[Any], max_sessions: int, lifetime: float,
                 gather_timeout: float = 10.0) -> None:
        self.ice_servers = list(ice_servers)
        self.max_sessions = max_sessions
        self.lifetime = lifetime
        self.gather_timeout = gather_timeout
        self.sessions: dict[int, Session] = {}
        self._reserved = 0  # offers being answered: they hold a slot too
        self._ids = itertools.count(1)
        self._closing = False
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            # their info and warning lines name the probes' addresses, which the
            # collector keeps nowhere unless told to (keep_ip)
            for name in ("aioice", "aiortc"):
                logging.getLogger(name).setLevel(logging.ERROR)

    @property
    def active(self) -> int:
        return len(self.sessions) + self._reserved

    def _configuration(self) -> Any:
        from aiortc import RTCConfiguration, RTCIceServer

        servers = [RTCIceServer(urls=list(s.urls) if isinstance(s.urls, tuple) else s.urls,
                                username=s.username, credential=s.credential)
                   for s in self.ice_servers]
        # an explicit list, even empty: None would make aiortc use Google's STUN server
        return RTCConfiguration(iceServers=servers)

    def _retry_after(self) -> float:
        now = time.monotonic()
        ends = [s.started + self.lifetime - now for s in self.sessions.values()]
        return max(min(ends, default=1.0), 1.0)

    async def answer(self, sdp: str, key_id: str) -> Answer:
        """Answer an offer (raises PeerFull, BadOffer)."""
        if self._closing or self.active >= self.max_sessions:
            raise PeerFull(self._retry_after())
        self._reserved += 1  # taken before the first await: no two offers get the last slot
        try:
            return await self._answer(sdp, key_id)
        finally:
            self._reserved -= 1

    async def _answer(self, sdp: str, key_id: str) -> Answer:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(self._configuration())
        session = Session(next(self._ids), key_id, time.monotonic(), pc)
        self._wire(session)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:  # whatever the SDP parser or aiortc's checks raise
                raise BadOffer(f"the offer is not a usable SDP offer: {exc}") from exc
            if not pc.getTransceivers() and pc.sctp is None:
                raise BadOffer("the offer has neither an audio nor a data channel m-line")
            answer = await pc.createAnswer()
            # aiortc gathers every candidate here: the answer is complete (non-trickle)
            await asyncio.wait_for(pc.setLocalDescription(answer), self.gather_timeout)
        except BaseException:
            await pc.close()
            raise
        self.sessions[session.id] = session
        session.timer = asyncio.ensure_future(self._expire(session))
        local = pc.localDescription.sdp
        log.info("webrtc session", extra={"event": "webrtc_session", "session": session.id,
                                          "active": len(self.sessions)})
        return Answer(local, session.id, candidate_counts(local), self.lifetime)

    def _wire(self, session: Session) -> None:
        pc = session.pc

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                if channel.readyState == "open":
                    session.echoed += 1
                    channel.send(message)

        @pc.on("track")
        def on_track(track: Any) -> None:
            # fired inside setRemoteDescription, before the answer: the same
            # transceiver then sends the tone back
            if track.kind == "audio":
                # the tone starts once the probe's audio arrives, as an echo would: audio
                # back means both directions carried media (a censor dropping only the
                # probe's RTP leaves it silent)
                heard = asyncio.Event()
                session.drains.append(asyncio.ensure_future(drain(track, heard)))
                pc.addTrack(tone_track(heard))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close_session(session.id)

    async def _expire(self, session: Session) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(session.closed.wait(), self.lifetime)
        await self.close_session(session.id)

    async def close_session(self, session_id: int) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        session.closed.set()
        if session.timer is not None and session.timer is not asyncio.current_task():
            session.timer.cancel()
        with contextlib.suppress(Exception):
            await session.pc.close()
        for task in session.drains:
            task.cancel()
        log.info("webrtc session closed", extra={
            "event": "webrtc_session_closed", "session": session.id, "echoed": session.echoed,
            "seconds": round(time.monotonic() - session.started, 1)})

    async def close(self) -> None:
        """Close every session (the collector is shutting down)."""
        self._closing = True
        await asyncio.gather(*(self.close_session(i) for i in list(self.sessions)))
