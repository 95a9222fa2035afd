"""`POST /api/v1/webrtc/offer`: the WebRTC reference peer, for registered probes only.

The probe sends a complete SDP offer (non-trickle) and gets a complete answer;
the call then runs directly between the probe and `collector.webrtc_peer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from collector.auth import SignedProbe
from collector.errors import ApiError
from collector.services import Services, ServicesDep
from collector.webrtc_peer import BadOffer, KeyBusy, PeerFull, PeerPool

POOL = "webrtc_peer"
MAX_SDP = 64 * 1024  # a probe's offer (one audio m-line, one data channel) is ~2 KB


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    services: Services | None = getattr(app.state, "services", None)
    pool = services.extras.get(POOL) if services else None
    if pool is not None:
        await pool.close()


router = APIRouter(tags=["webrtc"], lifespan=_lifespan)


class Offer(BaseModel):
    sdp: str = Field(max_length=MAX_SDP, description="a complete SDP offer (RFC 8866)")
    type: Literal["offer"]


class PeerInfo(BaseModel):
    session: int
    candidates: dict[str, int] = Field(description="the answer's candidates by type")
    lifetime_seconds: float


class AnswerBody(BaseModel):
    sdp: str
    type: Literal["answer"] = "answer"
    peer: PeerInfo


def _pool(services: Services) -> PeerPool:
    pool = services.extras.get(POOL)
    if pool is None:
        settings = services.settings
        pool = services.extras[POOL] = PeerPool(
            settings.webrtc_ice_servers, settings.webrtc_max_sessions,
            settings.webrtc_session_seconds, per_key=settings.webrtc_sessions_per_key,
            max_candidates=settings.webrtc_max_candidates,
            allow_private=settings.webrtc_allow_private,
            echo_max_messages=settings.webrtc_echo_max_messages)
    return pool


@router.post("/api/v1/webrtc/offer", response_model=AnswerBody)
async def offer(payload: Offer, probe: SignedProbe, services: ServicesDep,
                request: Request) -> AnswerBody:
    """Answer a WebRTC offer with the reference peer, which echoes data-channel
    messages and sends the received audio back. Signed requests (probe/core/auth.py)
    from registered keys; 429 with Retry-After when every session is taken."""
    if not services.settings.webrtc_enabled:
        raise ApiError(403, "webrtc_disabled", "this collector runs no WebRTC reference peer")
    try:
        # the local address it arrived at (restored from the API process's
        # header when it came through collector.media_proxy)
        reached = request.scope.get("server") or ("", 0)
        answer = await _pool(services).answer(payload.sdp, probe.key_id, reached[0])
    except KeyBusy as exc:
        seconds = str(int(exc.retry_after) + 1)
        raise ApiError(429, "too_many_sessions", f"this key has as many WebRTC sessions as "
                       f"it may; retry in {seconds} s", {"Retry-After": seconds}) from None
    except PeerFull as exc:
        seconds = str(int(exc.retry_after) + 1)
        raise ApiError(429, "peer_busy", f"every WebRTC session is taken; retry in {seconds} s",
                       {"Retry-After": seconds}) from None
    except BadOffer as exc:
        raise ApiError(400, "bad_offer", str(exc)[:300]) from None
    except TimeoutError:
        raise ApiError(503, "gathering_timeout", "the reference peer could not gather its "
                       "ICE candidates in time") from None
    return AnswerBody(sdp=answer.sdp, peer=PeerInfo(
        session=answer.session, candidates=answer.candidates,
        lifetime_seconds=answer.lifetime))
