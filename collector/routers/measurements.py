"""`POST /api/v1/measurements` (ingest a batch) and `GET /api/v1/measurements`
(filtered, cursor-paged)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collector.batch import MalformedBody, TooManyItems, parse_batch
from collector.errors import ApiError
from collector.export import item
from collector.ingest import Ingestor
from collector.query import FiltersDep, parse_cursor
from collector.services import ServicesDep

router = APIRouter(tags=["measurements"])

BATCH_EXAMPLE = {"results": [{"id": "5b0f...", "status": "accepted", "reason": None}]}


def get_ingestor(services: ServicesDep) -> Ingestor:
    ingestor = services.extras.get("ingestor")
    if ingestor is None:
        log = services.log if services.settings.transparency_log else None
        ingestor = services.extras["ingestor"] = Ingestor(services.settings, services.keys,
                                                          services.store, services.identity,
                                                          log)
    return ingestor


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@router.post("/api/v1/measurements",
             responses={200: {"content": {"application/json": {"example": BATCH_EXAMPLE}}}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}})
async def submit(request: Request, services: ServicesDep,
                 ingestor: Annotated[Ingestor, Depends(get_ingestor)]) -> Response:
    """A JSON array of signed measurement records. One result per record, in
    order: `accepted`, `duplicate` or `rejected` (with a reason). The whole
    batch is written in one transaction; a malformed body writes nothing."""
    body = await request.body()
    settings = services.settings
    try:
        elements = await run_in_threadpool(parse_batch, body, settings.max_batch)
    except TooManyItems as exc:
        raise ApiError(413, "batch_too_large", f"{exc}; send at most {exc.limit}") from None
    except MalformedBody as exc:
        raise ApiError(400, "malformed_body", str(exc)) from None
    address = request.client.host if request.client else None
    origin = services.enricher.lookup(address)
    outcomes = await run_in_threadpool(ingestor.ingest, elements, origin,
                                       address if settings.keep_ip else None)
    return _json({"results": [o.as_json() for o in outcomes]})


@router.get("/api/v1/measurements")
async def query(services: ServicesDep, filters: FiltersDep,
                cursor: Annotated[str | None, Query(max_length=40)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    """Stored records matching the filters, oldest first, `limit` at a time;
    pass `next_cursor` back as `cursor` for the next page (null at the end)."""
    after = parse_cursor(cursor)
    rows, next_seq = await run_in_threadpool(services.store.page, filters, after, limit)
    return _json({"items": [item(r) for r in rows],
                  "next_cursor": None if next_seq is None else str(next_seq)})


