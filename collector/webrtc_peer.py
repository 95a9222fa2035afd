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

Its answer lists host candidates on the address the offer arrived at only
(`reached_host_only`). The ICE servers are the collector's own (settings
`webrtc_ice_servers`), never aiortc's implicit default (a public Google STUN
server): an empty list means host candidates only, right for a collector on a
public address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from probe.core.addresses import refusal
from probe.core.errors import MalformedMessage, VoipwatchError
from probe.wire.media import drain, tone_track
from probe.wire.sdp import candidate_counts

ECHO_MAX_BYTES = 1024 * 1024  # data-channel bytes echoed per session

log = logging.getLogger("collector.webrtc")

class PeerFull(VoipwatchError):
    """Every session slot is taken; `retry_after` seconds until the oldest ends."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"all sessions busy; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class BadOffer(MalformedMessage):
    """The offer is not an SDP offer aiortc can answer; the message says why."""


class KeyBusy(PeerFull):
    """This key has as many live sessions as it may."""


def _candidate(line: str) -> tuple[str, str] | None:
    """(address, type) of an `a=candidate:` line (RFC 8839 §5.1), None if malformed."""
    fields = line.split()
    return (fields[4], fields[7]) if len(fields) >= 8 and fields[6] == "typ" else None


def filter_candidates(sdp: str, allow_private: bool, limit: int | None = None) -> str:
    """The SDP without the candidates the collector must not probe or reveal:
    mDNS names (`.local`), and addresses on the deny-list (private, link-local,
    loopback...; probe.core.addresses), unless `allow_private` (labs). BadOffer
    when it lists more than `limit` candidates."""
    lines = sdp.splitlines()
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    if limit is not None and len(candidates) > limit:
        raise BadOffer(f"the offer lists {len(candidates)} candidates; at most {limit}")
    kept = []
    for line in lines:
        if line.startswith("a=candidate:"):
            candidate = _candidate(line)
            if candidate is None:
                continue
            address = candidate[0]
            if not allow_private and (address.lower().endswith(".local")
                                      or refusal(address) is not None):
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:  # an mDNS name, or no address at all
        return None
    mapped = getattr(ip, "ipv4_mapped", None)  # a dual-stack socket's ::ffff:a.b.c.d
    return mapped or ip


def reached_host_only(sdp: str, reached: str | None) -> str:
    """The answer with, of its host candidates, only those on the address the
    offer arrived at, when it has any there: the probe has just reached that
    address, and every other one (a second public address, a management network,
    a container bridge, or a lab host's many addresses) would cost the probe one
    connectivity check per address (traffic on a metered link, RFC 8445 §6.1.2)
    and tell it about the collector's other interfaces. Server-reflexive and
    relay candidates are kept; with no host candidate there, nothing changes."""
    address = _ip(reached or "")
    lines = sdp.splitlines()
    hosts = {i: _ip(candidate[0]) for i, line in enumerate(lines)
             if line.startswith("a=candidate:") and (candidate := _candidate(line)) is not None
             and candidate[1] == "host"}
    others = {i for i, ip in hosts.items() if ip != address}
    if address is None or len(others) == len(hosts):
        return sdp
    return "\r\n".join(line for i, line in enumerate(lines) if i not in others) + "\r\n"


# the address the offer being answered arrived at: the only one its connection
# gathers host candidates on (see gather_on_reached_only)
_REACHED: ContextVar[str | None] = ContextVar("voipwatch_webrtc_reached", default=None)


def gather_on_reached_only() -> None:
    """Make aioice gather host candidates, for an answer, only on the address
    the offer arrived at (when the host has it; otherwise on all, as before).
    Listing only that one in the answer (reached_host_only) was not enough: the
    connection still sent connectivity checks from every other address, the
    probe learnt them as peer-reflexive candidates and could nominate one (in
    the lab, under load, a call then ran to another address of the collector's
    namespace, and past the censor's rule). aioice 0.13 takes its host
    addresses from a module function and has no option per connection: this
    wraps it once, reading the address from a context variable set in the task
    that answers (the tasks aiortc starts while gathering inherit it)."""
    import aioice.ice as ice

    original: Callable[..., list[str]] = ice.get_host_addresses
    if getattr(original, "voipwatch_reached_only", False):
        return

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        reached = _ip(_REACHED.get() or "")
        if reached is None:
            return found
        return [a for a in found if _ip(a) == reached] or found

    host_addresses.voipwatch_reached_only = True  # type: ignore[attr-defined]
    ice.get_host_addresses = host_addresses


@dataclass
class Session:
    id: int
    key_id: str
    started: float
    pc: Any
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.Task[None] | None = None
    echoed: int = 0
    echoed_bytes: int = 0
    echo_refused: int = 0
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
                 gather_timeout: float = 10.0, *, per_key: int | None = None,
                 max_candidates: int | None = None, allow_private: bool = False,
                 echo_max_messages: int | None = None) -> None:
        self.ice_servers = list(ice_servers)
        self.max_sessions = max_sessions
        self.per_key = per_key
        self.max_candidates = max_candidates
        self.allow_private = allow_private
        self.echo_max_messages = echo_max_messages
        self._reserved_by: dict[str, int] = {}
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

    async def answer(self, sdp: str, key_id: str, reached: str | None = None) -> Answer:
        """Answer an offer (raises PeerFull, BadOffer); `reached`: the local
        address the offer arrived at (see reached_host_only)."""
        if self._closing or self.active >= self.max_sessions:
            raise PeerFull(self._retry_after())
        mine = self._reserved_by.get(key_id, 0) + sum(
            s.key_id == key_id for s in self.sessions.values())
        if self.per_key is not None and mine >= self.per_key:
            raise KeyBusy(self._retry_after())
        offer = filter_candidates(sdp, self.allow_private, self.max_candidates)
        # taken before the first await: no two offers get the last slot
        self._reserved += 1
        self._reserved_by[key_id] = self._reserved_by.get(key_id, 0) + 1
        try:
            answer = await self._answer(offer, key_id, reached)
        finally:
            self._reserved -= 1
            self._reserved_by[key_id] -= 1
            if not self._reserved_by[key_id]:
                del self._reserved_by[key_id]
        answer.sdp = reached_host_only(filter_candidates(answer.sdp, self.allow_private),
                                       reached)
        answer.candidates = candidate_counts(answer.sdp)
        return answer

    async def _answer(self, sdp: str, key_id: str, reached: str | None = None) -> Answer:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        gather_on_reached_only()
        _REACHED.set(reached)  # this task's context: the gathering below reads it
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
                if channel.readyState != "open":
                    return
                if (self.echo_max_messages is not None
                        and session.echoed >= self.echo_max_messages) or \
                        session.echoed_bytes + len(message) > ECHO_MAX_BYTES:
                    session.echo_refused += 1  # a probe's check sends five
                    return
                session.echoed += 1
                session.echoed_bytes += len(message)
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
