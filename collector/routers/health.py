"""`/healthz`: is the service up and its database reachable."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from collector import __version__
from collector.services import ServicesDep

router = APIRouter(tags=["health"])
SERVICE = "voipwatch-collector"


@router.get("/healthz")
async def healthz(services: ServicesDep) -> JSONResponse:
    def ping() -> None:
        with services.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    body: dict[str, Any] = {"service": SERVICE, "version": __version__,
                            "database": services.engine.dialect.name}
    try:
        await run_in_threadpool(ping)
    except sa.exc.SQLAlchemyError:
        return JSONResponse({**body, "status": "degraded", "detail": "database unreachable"},
                            status_code=503)
    return JSONResponse({**body, "status": "ok"})
