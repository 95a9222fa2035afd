"""`/`: the first results page (collector.dashboard)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from collector.dashboard import render, summarise
from collector.services import ServicesDep
from probe.core.record import utcnow

router = APIRouter(tags=["dashboard"])


@router.get("/", response_class=HTMLResponse)
async def results(services: ServicesDep,
                  days: Annotated[int, Query(ge=1, le=3650)] = 30) -> HTMLResponse:
    rows = await run_in_threadpool(services.store.latest, utcnow() - timedelta(days=days))
    total = await run_in_threadpool(services.store.count)
    return HTMLResponse(render(summarise(rows), total, days), headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
