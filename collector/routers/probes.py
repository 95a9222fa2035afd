"""`POST /api/v1/probes`: register a probe's public key."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from collector.errors import ApiError
from collector.keys import RegistrationError
from collector.limits import OverLimit, client_subject
from collector.ratelimit import RateLimiter
from collector.services import ServicesDep

router = APIRouter(tags=["probes"])

def _limiter(services: ServicesDep) -> RateLimiter:
    """Per worker, a first, cheap filter before the count all workers share: never
    stricter than that count (the setting `register_rate_per_hour`)."""
    limiter = services.extras.get("register_limiter")
    if limiter is None:
        per_hour = services.settings.register_rate_per_hour
        limiter = services.extras["register_limiter"] = RateLimiter(
            per_minute=max(per_hour / 60.0, 1.0), burst=min(per_hour, 1000))
    return limiter


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: str = Field(max_length=100, description="base64 of the raw 32-byte Ed25519 key")
    token: str | None = Field(None, max_length=200, description="enrollment token")


class Registered(BaseModel):
    key_id: str


@router.post("/api/v1/probes", status_code=201, response_model=Registered,
             responses={200: {"model": Registered, "description": "already registered"}})
async def register(payload: Registration, request: Request,
                   services: ServicesDep) -> JSONResponse:
    subject = client_subject(request.client.host if request.client else None)
    wait = _limiter(services).take(subject)
    counters, limit = services.control.counters, services.settings.register_rate_per_hour
    if not wait:  # then the new keys per hour all workers share (IPv6: per /64)
        used = await run_in_threadpool(counters.usage, "register", subject, 3600.0)
        wait = 60.0 if used >= limit else 0.0
    if wait:
        raise ApiError(429, "rate_limited", "too many registrations from this address",
                       {"Retry-After": str(int(wait) + 1)})

    def count(conn: sa.Connection) -> None:
        # the check above let concurrent registrations through together; this
        # count, in the transaction that creates the key, is the exact one
        if not counters.charge(conn, "register", subject, limit, 3600.0, 1):
            raise OverLimit(subject)

    try:
        row, created = await run_in_threadpool(
            services.keys.register, payload.public_key, payload.token,
            require_token=services.settings.token_required, also=count)
    except RegistrationError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    except OverLimit:
        raise ApiError(429, "rate_limited", "too many registrations from this address",
                       {"Retry-After": "60"}) from None
    return JSONResponse({"key_id": row.key_id}, status_code=201 if created else 200)
