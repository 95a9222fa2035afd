"""The throttling reflector's sessions (collector/reflector.py, docs/throttle.md).

    POST   /api/v1/reflector/sessions               {port, transport, duration_s} -> 201
    GET    /api/v1/reflector/sessions/{id}/report   what arrived so far
    DELETE /api/v1/reflector/sessions/{id}          close it; the final report

Signed requests (probe/core/auth.py) from registered keys only; a session is seen
and closed only by the key that opened it.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from collector.auth import SignedProbe
from collector.errors import ApiError
from collector.ratelimit import RateLimiter
from collector.reflector import Reflector, ReflectorError, encode_key
from collector.services import Services, ServicesDep

router = APIRouter(tags=["reflector"])


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = Field(ge=1, le=65535, description="the service's port to serve")
    transport: Literal["udp", "tcp"] = "udp"
    duration_s: float = Field(20.0, gt=0, le=600, description="lifetime wanted (capped by "
                              "the collector's reflector_session_seconds)")


class SessionCreated(BaseModel):
    id: str
    key: str = Field(description="base64 session key for the packet tokens "
                     "(probe/wire/throttle.py)")
    address: str = Field(description="where to send: the reflector's address")
    port: int
    transport: str
    expires_in: float
    slice_ms: int


def _reflector(services: Services) -> Reflector:
    if not services.settings.reflector_enabled:
        raise ApiError(403, "reflector_disabled", "this collector runs no throttling reflector")
    reflector = services.extras.get("reflector")
    if not isinstance(reflector, Reflector):  # the first request: start it
        reflector = services.extras["reflector"] = Reflector(
            services.settings, throttle_ports(services.catalogue))
    return reflector


def throttle_ports(catalogue: Any) -> frozenset[int]:
    """The ports the catalogue's throttle endpoints name (served by default)."""
    if catalogue is None:
        return frozenset()
    return frozenset(e.port for service in catalogue.services for e in service.endpoints
                     if e.check == "throttle")


def _api(exc: ReflectorError) -> ApiError:
    headers = {"Retry-After": "5"} if exc.status in (429, 503) else None
    return ApiError(exc.status, exc.code, exc.detail, headers)


@router.post("/api/v1/reflector/sessions", status_code=201, response_model=SessionCreated)
async def create_session(payload: SessionRequest, request: Request, probe: SignedProbe,
                         services: ServicesDep) -> JSONResponse:
    """Open a session: the reflector listens on `port` (UDP or TCP) for it."""
    reflector = _reflector(services)
    limiter = services.extras.get("reflector_limiter")
    if limiter is None:
        limiter = services.extras["reflector_limiter"] = RateLimiter(
            services.settings.reflector_rate_per_minute)
    wait = limiter.take(probe.key_id)
    if wait:
        raise ApiError(429, "rate_limited", f"this key opened too many reflector sessions; "
                       f"retry in {int(wait) + 1} s", {"Retry-After": str(int(wait) + 1)})
    server = request.scope.get("server") or ("127.0.0.1", 0)
    client = request.client.host if request.client else ""
    try:
        session = await reflector.create(probe.key_id, client, str(server[0]), payload.port,
                                         payload.transport, payload.duration_s)
    except ReflectorError as exc:
        raise _api(exc) from None
    body = SessionCreated(id=session.id, key=encode_key(session.key), address=session.address,
                          port=session.port, transport=session.transport,
                          expires_in=round(session.expires - time.monotonic(), 3),
                          slice_ms=100)
    return JSONResponse(body.model_dump(), status_code=201)


@router.get("/api/v1/reflector/sessions/{session_id}/report")
async def report(session_id: str, probe: SignedProbe, services: ServicesDep) -> dict[str, Any]:
    """Packets, bytes, arrival times and slices per flow, so far."""
    try:
        return _reflector(services).get(session_id, probe.key_id).report()
    except ReflectorError as exc:
        raise _api(exc) from None


@router.delete("/api/v1/reflector/sessions/{session_id}")
async def close_session(session_id: str, probe: SignedProbe,
                        services: ServicesDep) -> dict[str, Any]:
    """Close the session (its port is released when no other session uses it);
    the answer is its final report."""
    reflector = _reflector(services)
    try:
        session = reflector.get(session_id, probe.key_id)
    except ReflectorError as exc:
        raise _api(exc) from None
    reflector.close(session.id)
    return session.report()
