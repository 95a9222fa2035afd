"""`webrtc`: a whole call setup against the collector's reference peer, stage
by stage, saying where it breaks (docs/webrtc.md).

1. `gathering`: ICE candidates from exactly the catalogue's ICE servers
   (RFC 8445 §5.1.1; never aiortc's implicit default), counted by type;
   `policy: relay` keeps relay candidates only (RFC 8829 §4.1.1).
2. `signalling`: the complete offer (non-trickle) as a signed POST; the
   answer comes back complete too.
3. `ice`: connectivity checks (RFC 8445 §7.2) to a nominated pair.
4. `dtls`: the DTLS handshake on that pair (RFC 8827 §6.5, RFC 5764).
5. `sctp`: the data channel opens (RFC 8831, RFC 8832).
6. `echo`: messages through the channel and back from the peer.
7. `media`: a few seconds of Opus audio RTP both ways (RFC 3550 statistics:
   packets, loss, jitter, RTCP reports), judged over the whole window: the
   packets that came against those the peer sent, and the silences in the
   timeline (sampled every 50 ms), so that a call cut after it set up is told
   from one that works.

`ok` only when data and media both flowed, and the audio did not stop;
otherwise `failed` with the blocking method of the first stage that broke.
aiortc is imported here, on the first webrtc endpoint of a run, never by a
run without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from probe.checks.base import Context, ControlState, Observation, Operation, Status, carried
from probe.checks.collector_url import substitute
from probe.checks.webrtc.signal import Reply, post
from probe.checks.webrtc.stats import (
    MediaSample,
    echo_evidence,
    media_evidence,
    pair_evidence,
    timeline_evidence,
    transport_traffic,
    usable_gathering,
)
from probe.core.errors import StepFailed
from probe.core.failures import Failure, describe
from probe.wire.media import drain, tone_track
from probe.wire.sdp import candidate_counts, reachable_candidate

NAME = "webrtc"
VERSION = "1"
DEFAULT_TIMEOUT = 10.0
ECHO_MESSAGES = 5
ECHO_WAIT = 2.0  # seconds for the echoes, at most
MEDIA_SECONDS = 2.5  # of audio after DTLS, before the statistics are read
SAMPLE_EVERY = 0.05  # seconds between looks at the audio counters (the media timeline)
# aioice waits 5 s for STUN and TURN answers, then goes on with what it has
# (host candidates, under policy all): gathering gets that long whatever the timeout
GATHER_WAIT = 6.0
RETRY_BUSY = 5.0  # a busy peer's Retry-After is honoured up to this many seconds
STAGES = {"gathering": Operation.WEBRTC_GATHERING, "signalling": Operation.WEBRTC_SIGNALLING,
          "ice": Operation.WEBRTC_ICE, "dtls": Operation.WEBRTC_DTLS,
          "sctp": Operation.WEBRTC_SCTP, "echo": Operation.WEBRTC_ECHO,
          "media": Operation.WEBRTC_MEDIA}



async def run(endpoint: Any, ctx: Context) -> Observation:
    if ctx.signer is None:
        return Observation(status=Status.UNMEASURABLE, failure=Failure.NOT_RUN,
                           evidence={"error": "no probe key to sign the offer"})
    url = substitute(endpoint.url, ctx.collector, keep_path=True)
    if url is None:
        return Observation(status=Status.UNMEASURABLE, failure=Failure.NOT_RUN,
                           evidence={"error": f"the catalogue's offer URL {endpoint.url} is a "
                                     "placeholder and this run has no collector "
                                     "(--collector URL)"})
    if url != endpoint.url:  # the record keeps the catalogue's endpoint as written
        endpoint = endpoint.model_copy(update={"url": url})
    call = Call(endpoint, ctx)
    try:
        try:
            observation = await call.run()
        except StepFailed as exc:
            observation = carried(exc)
        await call.collect()
    finally:
        await call.close()
    return call.finish(observation)


def ice_server_urls(endpoint: Any) -> list[str]:
    urls: list[str] = []
    for server in endpoint.ice_servers:
        urls.extend((server.urls,) if isinstance(server.urls, str) else server.urls)
    return urls


class Call:
    """One peer connection to the reference peer and what it saw."""

    def __init__(self, endpoint: Any, ctx: Context) -> None:
        self.endpoint = endpoint
        self.ctx = ctx
        self.start = time.monotonic()
        # every stage waits ctx.timeout at most, the whole call three times that
        self.deadline = self.start + ctx.timeout * 3
        self.stages: dict[str, dict[str, Any]] = {}
        self.pc: Any = None
        self.channel: Any = None
        self.control: ControlState = ControlState.ABSENT
        self.peer: dict[str, Any] = {}
        self.traffic = [0, 0]  # bytes sent, received: signalling, then the call
        self.dtls_at: float | None = None
        self.echo_sent: dict[int, float] = {}
        self.echo_rtts: list[float] = []
        self.echoed = asyncio.Event()
        self.drains: list[asyncio.Task[None]] = []
        self.samples: list[MediaSample] = []
        self.sampler: asyncio.Task[None] | None = None
        self._reports: tuple[int, Any] = (0, None)  # receiver reports seen, the last one's time

    def limit(self) -> float:
        return max(min(self.ctx.timeout, self.deadline - time.monotonic()), 0.0)

    def fail(self, stage: str, failure: Failure, status: Status = Status.FAILED,
             **evidence: Any) -> StepFailed[Observation]:
        self.stages.setdefault(stage, {}).update(ok=False, **evidence)
        return StepFailed(Observation(status=status, failure=failure, operation=STAGES[stage],
                                      evidence={"phase": stage}))

    async def timed(self, stage: str, waiting: Callable[[], Any], at_least: float = 0) -> float:
        """Run one stage, recording its duration; TimeoutError past its limit."""
        began = time.monotonic()
        limit = min(max(self.limit(), at_least), max(self.deadline - began, 0))
        try:
            await asyncio.wait_for(waiting(), limit)
        finally:
            self.stages[stage] = {"ms": round((time.monotonic() - began) * 1000, 1)}
        return began

    # --- the stages -----------------------------------------------------------------

    async def run(self) -> Observation:
        try:
            self.pc = self._peer_connection()
        except ValueError as exc:  # an ICE server URL aiortc cannot parse
            raise self.fail("gathering", Failure.NOT_RUN, Status.UNMEASURABLE,
                            error=describe(exc)) from exc
        try:
            await self.timed("gathering", self._gather, at_least=GATHER_WAIT)
        except TimeoutError:
            raise self.fail("gathering", Failure.GENERIC_TIMEOUT) from None
        counts = candidate_counts(self.pc.localDescription.sdp)
        self.stages["gathering"].update(candidates=counts)
        if not usable_gathering(counts, self.endpoint.policy):
            # nothing to call with: which ICE server failed, and why, is the
            # stun/turn checks' finding; the reference peer cannot vouch for it
            raise self.fail("gathering", Failure.ICE_NO_CANDIDATES)
        self.stages["gathering"]["ok"] = True

        answer = await self._signal()
        try:
            await self.pc.setRemoteDescription(answer)
        except Exception as exc:  # an answer aiortc cannot use: our peer's fault
            raise self.fail("signalling", Failure.PROTOCOL_ERROR, Status.UNMEASURABLE,
                            error=describe(exc)) from exc

        await self._stage_state("ice", lambda: self.pc.iceConnectionState,
                                ("completed",), ("failed", "closed"),
                                Failure.ICE_FAILED)
        self.stages["ice"]["pair"] = pair_evidence(self._nominated())
        dtls = self.pc.sctp.transport
        await self._stage_state("dtls", lambda: dtls.state, ("connected",),
                                ("failed", "closed"), Failure.DTLS_FAILED)
        self.dtls_at = time.monotonic()
        self.sampler = asyncio.ensure_future(self._sample())
        await self._stage_state("sctp", lambda: self.channel.readyState, ("open",),
                                ("closed",), Failure.GENERIC_TIMEOUT)
        await self._echo()
        return Observation(status=Status.OK)

    def _peer_connection(self) -> Any:
        from aiortc import (
            RTCConfiguration,
            RTCIceServer,
            RTCIceTransportPolicy,
            RTCPeerConnection,
            RTCRtpSender,
        )

        servers = [RTCIceServer(urls=list(s.urls) if isinstance(s.urls, tuple) else s.urls,
                                username=s.username, credential=s.credential)
                   for s in self.endpoint.ice_servers]
        policy = (RTCIceTransportPolicy.RELAY if self.endpoint.policy == "relay"
                  else RTCIceTransportPolicy.ALL)
        # iceServers always a list: None would mean aiortc's public default. The
        # answer's BUNDLE puts audio and data on one 5-tuple, as in browsers' calls
        # (aiortc's max-bundle policy would stop the shared transport: not used).
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.channel = pc.createDataChannel("voipwatch-echo")
        self.channel.on("message", self._on_echo)
        pc.on("track", self._on_track)
        transceiver = pc.addTransceiver(tone_track(), direction="sendrecv")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"]
        transceiver.setCodecPreferences(opus)
        return pc

    async def _gather(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())

    async def _signal(self) -> Any:
        from aiortc import RTCSessionDescription

        body = json.dumps({"sdp": self.pc.localDescription.sdp, "type": "offer"}).encode()
        began = time.monotonic()
        reply = await self._post(body)
        self.stages["signalling"] = {"ms": round((time.monotonic() - began) * 1000, 1),
                                     "http_status": reply.status, **reply.evidence}
        if reply.status != 200:
            raise self.fail("signalling", Failure.ERROR_RESPONSE, Status.UNMEASURABLE,
                            error=_api_error(reply))
        try:
            data = json.loads(reply.body)
            sdp = data["sdp"]
            if data.get("type") != "answer" or not isinstance(sdp, str):
                raise ValueError("not an SDP answer")
        except (ValueError, KeyError, TypeError) as exc:
            raise self.fail("signalling", Failure.PROTOCOL_ERROR, Status.UNMEASURABLE,
                            error=describe(exc)) from exc
        self.stages["signalling"]["ok"] = True
        # the peer is up and its ICE agent gathered a candidate this network can
        # be expected to reach: later failures are this path's, not the peer's
        address = reply.evidence.get("address")
        self.peer = {"candidates": candidate_counts(sdp),
                     "reachable": reachable_candidate(sdp, address)}
        if self.peer["reachable"]:
            self.control = ControlState.OK
        return RTCSessionDescription(sdp=sdp, type="answer")

    async def _post(self, body: bytes) -> Reply:
        while True:
            try:
                reply = await post(self.endpoint, body, self.ctx, self.deadline)
            except StepFailed as exc:
                observation = carried(exc)
                self._count(observation.bytes_sent, observation.bytes_received)
                observation.bytes_sent = observation.bytes_received = 0  # counted once
                step = observation.evidence.pop("phase", None)
                self.stages["signalling"] = {"ok": False, "step": step}
                observation.evidence["phase"] = "signalling"
                raise StepFailed(observation) from exc
            self._count(*reply.traffic)
            wait = _retry_after(reply)
            if wait is None or time.monotonic() + wait > self.deadline - self.ctx.timeout:
                return reply
            await asyncio.sleep(wait)  # the peer is busy: every slot taken

    def _count(self, sent: int, received: int) -> None:
        self.traffic[0] += sent
        self.traffic[1] += received

    async def _stage_state(self, stage: str, state: Callable[[], str], good: tuple[str, ...],
                           bad: tuple[str, ...], failure: Failure) -> None:
        async def settled() -> None:
            while state() not in good + bad:
                await asyncio.sleep(0.02)

        try:
            await self.timed(stage, settled)
        except TimeoutError:
            raise self.fail(stage, Failure.GENERIC_TIMEOUT, state=state()) from None
        if state() in bad:
            raise self.fail(stage, failure, state=state())
        self.stages[stage].update(ok=True)

    def _nominated(self) -> Any:
        # aioice keeps the nominated pair per component (1: RTP with bundle and rtcp-mux)
        connection = getattr(self.pc.sctp.transport.transport, "_connection", None)
        return getattr(connection, "_nominated", {}).get(1)

    async def _echo(self) -> None:
        began = time.monotonic()
        for index in range(ECHO_MESSAGES):
            self.echo_sent[index] = time.perf_counter()
            self.channel.send(f"{index}:voipwatch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.echoed.wait(), min(ECHO_WAIT, self.limit()))
        echo = echo_evidence(ECHO_MESSAGES, self.echo_rtts)
        self.stages["echo"] = {"ms": round((time.monotonic() - began) * 1000, 1), **echo}
        if not self.echo_rtts:
            raise self.fail("echo", Failure.GENERIC_TIMEOUT)
        self.stages["echo"]["ok"] = True

    def _on_track(self, track: Any) -> None:
        # aiortc decodes every packet the peer sends back into a queue the track's
        # reader empties; nobody else reads it, and unread it grew by about 1 MiB a
        # second per call (docs/lab.md). The statistics count RTP packets, not frames.
        self.drains.append(asyncio.ensure_future(drain(track)))

    def _on_echo(self, message: Any) -> None:
        try:
            index = int(str(message).split(":", 1)[0])
            sent = self.echo_sent.pop(index)
        except (ValueError, KeyError):
            return
        self.echo_rtts.append((time.perf_counter() - sent) * 1000)
        if not self.echo_sent:
            self.echoed.set()

    # --- media and the end ------------------------------------------------------------

    async def _sample(self) -> None:
        """The media timeline: the audio counters every SAMPLE_EVERY seconds
        from DTLS on (aiortc's receiver does not expose arrival times)."""
        with contextlib.suppress(Exception):  # the call closed under it: the timeline ends
            while True:
                await self._take_sample()
                await asyncio.sleep(SAMPLE_EVERY)

    async def _take_sample(self) -> None:
        assert self.dtls_at is not None
        transceiver = self.pc.getTransceivers()[0]
        received = 0
        for item in (await transceiver.receiver.getStats()).values():
            if getattr(item, "type", None) == "inbound-rtp":
                received += item.packetsReceived
        count, last = self._reports
        for item in (await transceiver.sender.getStats()).values():
            if getattr(item, "type", None) == "remote-inbound-rtp" and item.timestamp != last:
                count, last = count + 1, item.timestamp  # a new receiver report from the peer
        self._reports = (count, last)
        self.samples.append(MediaSample((time.monotonic() - self.dtls_at) * 1000, received,
                                        count))

    async def collect(self) -> None:
        """Media statistics, once DTLS is up: audio has flowed since then."""
        if self.dtls_at is None or self.pc is None:
            return
        wait = self.dtls_at + MEDIA_SECONDS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, max(self.deadline - time.monotonic(), 0)))
        if self.sampler is not None:
            self.sampler.cancel()
            with contextlib.suppress(Exception):
                await self._take_sample()  # the window's end
        report = list((await self.pc.getStats()).values())
        media = media_evidence(report, _clock_rate(self.pc), time.monotonic() - self.dtls_at)
        media.update(timeline_evidence(self.samples))
        if media.get("packets_expected"):  # loss against what the peer sent, cuts included
            media["loss"] = round(media["missing"] / media["packets_expected"], 3)
        self.stages["media"] = media
        sent, received = transport_traffic(report)
        self._count(sent, received)

    def finish(self, observation: Observation) -> Observation:
        media = self.stages.get("media")
        if observation.status is Status.OK:
            if media and media["packets_received"] > 0 and not media.get("interrupted"):
                media["ok"] = True
            else:
                if media is not None:
                    media["ok"] = False
                # no audio at all, or audio that stopped after the call set up
                failure = (Failure.MEDIA_INTERRUPTED if media and media.get("interrupted")
                           else Failure.GENERIC_TIMEOUT)
                observation = Observation(status=Status.FAILED, failure=failure,
                                          operation=Operation.WEBRTC_MEDIA,
                                          evidence={"phase": "media"})
                if media and "stopped_ms" in media:
                    observation.evidence["stopped_ms"] = media["stopped_ms"]
        observation.bytes_sent, observation.bytes_received = self.traffic
        observation.evidence.update(
            policy=self.endpoint.policy, ice_servers=ice_server_urls(self.endpoint),
            stages=self.stages, total_ms=round((time.monotonic() - self.start) * 1000, 1))
        if self.peer:
            observation.evidence["peer"] = self.peer
        # the reference peer is this check's own control (see _signal); the runner
        # has no test helper for webrtc, so it is always set here
        observation.control = self.control
        return observation

    async def close(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)
        for task in self.drains:
            task.cancel()


def _retry_after(reply: Reply) -> float | None:
    if reply.status != 429:
        return None
    try:
        wait = float(reply.headers.get("retry-after", ""))
    except ValueError:
        return None
    return wait if 0 <= wait <= RETRY_BUSY else None


def _api_error(reply: Reply) -> str:
    try:
        data = json.loads(reply.body)
        return f"HTTP {reply.status} {data['error']}: {data['detail']}"[:300]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {reply.status}"


def _clock_rate(pc: Any) -> int:
    for transceiver in pc.getTransceivers():
        for codec in getattr(transceiver, "_codecs", []):
            return int(codec.clockRate)
    return 48000
