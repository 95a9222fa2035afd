"""`POST /api/v1/control`: the test helper, for registered probes only."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collector.auth import SignedProbe
from collector.errors import ApiError
from collector.services import ServicesDep

router = APIRouter(tags=["control"])


class ControlRequest(BaseModel):
    endpoints: list[dict[str, Any]] = Field(
        description="catalogue endpoints, as probe.catalogue.ENDPOINT_ADAPTER dumps them")


class ControlResponse(BaseModel):
    results: list[dict[str, Any] | None]


@router.post("/api/v1/control", response_model=ControlResponse)
async def control(payload: ControlRequest, probe: SignedProbe,
                  services: ServicesDep) -> Response:
    """What the collector sees of each endpoint: one Observation (or null) per
    endpoint, in order. Signed requests (probe/core/auth.py) from registered keys."""
    settings = services.settings
    if not settings.control_enabled:
        raise ApiError(403, "control_disabled", "this collector runs no test helper")
    count = len(payload.endpoints)
    if count > settings.control_max_endpoints:
        raise ApiError(413, "batch_too_large", f"{count} endpoints; at most "
                       f"{settings.control_max_endpoints} per request")
    wait = await run_in_threadpool(services.control.counters.take, "control_rate",
                                   probe.key_id, settings.control_rate_per_minute, 60.0,
                                   max(count, 1))
    if wait:
        raise ApiError(429, "rate_limited", f"this key asked for too many control checks; "
                       f"retry in {int(wait) + 1} s", {"Retry-After": str(int(wait) + 1)})
    results = await services.control.run(payload.endpoints, probe.key_id)
    return Response(orjson.dumps({"results": results}), media_type="application/json")
