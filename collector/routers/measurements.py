"""`POST /api/v1/measurements` (ingest a batch) and `GET /api/v1/measurements`
(filtered, cursor-paged)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collector import cursor as cursors
from collector.batch import MalformedBody, TooManyItems, parse_batch
from collector.db.writethread import WriteThread
from collector.errors import ApiError
from collector.export import item
from collector.ingest import Ingestor
from collector.query import FiltersDep
from collector.services import ServicesDep

router = APIRouter(tags=["measurements"])

BATCH_EXAMPLE = {"results": [{"id": "5b0f...", "status": "accepted", "reason": None}]}


def get_ingestor(services: ServicesDep) -> Ingestor:
    ingestor = services.extras.get("ingestor")
    if ingestor is None:
        log = services.log if services.settings.transparency_log else None
        # SQLite's writes take turns across processes: each process's run in a
        # thread ahead of its parsing and signature checks (collector/db/writethread.py)
        writes = WriteThread() if services.store.dialect == "sqlite" else None
        ingestor = services.extras["ingestor"] = Ingestor(services.settings, services.keys,
                                                          services.store, services.identity,
                                                          log, services.tally, writes)
    return ingestor


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers=headers)


@router.post("/api/v1/measurements",
             responses={200: {"content": {"application/json": {"example": BATCH_EXAMPLE}}}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}})
async def submit(request: Request, services: ServicesDep,
                 ingestor: Annotated[Ingestor, Depends(get_ingestor)]) -> Response:
    """A JSON array of signed measurement records. One result per record, in
    order: `accepted`, `duplicate` or `rejected` (with a reason). The whole
    batch is written in one transaction; a malformed body writes nothing.

    Sign the request as the probe does (`X-Voipwatch-Key`, `-Time`,
    `-Signature`, probe/core/auth.py): it is then checked before the body is
    parsed, and may carry up to `max_body_bytes`. Unsigned requests still
    work, held to `max_request_bytes` and a per-address rate."""
    body = await request.body()
    settings = services.settings
    try:
        elements = await run_in_threadpool(parse_batch, body, settings.max_batch)
    except TooManyItems as exc:
        raise ApiError(413, "batch_too_large", f"{exc}; send at most {exc.limit}") from None
    except MalformedBody as exc:
        raise ApiError(400, "malformed_body", str(exc)) from None
    quota = await _quota(request, services, len(elements))
    address = request.client.host if request.client else None
    origin = services.enricher.lookup(address)
    outcomes = await run_in_threadpool(ingestor.ingest, elements, origin,
                                       address if settings.keep_ip else None, quota)
    # several API processes share the listening socket, and a kept-alive connection
    # stays with the process that accepted it: a few busy uploaders could pin one
    # process at 100 % while the next idled (measured: 3:1). Closing after each
    # batch lets the next one go to whichever process accepts first: an idle one.
    spread = {"Connection": "close"} if settings.workers > 1 else None
    return _json({"results": [o.as_json() for o in outcomes]}, headers=spread)


async def _quota(request: Request, services: ServicesDep, records: int
                 ) -> Callable[[sa.Connection, int], None] | None:
    """Records per key per day (signed uploads; unsigned ones are rate-limited
    per address by the gate), across all workers: read before, counted in the
    transaction that stores the records (a refused batch writes nothing)."""
    probe = request.scope.get("state", {}).get("probe")
    if probe is None or not records:
        return None
    limit = services.settings.ingest_quota_per_day
    counters = services.control.counters
    used = await run_in_threadpool(counters.usage, "ingest_quota", probe.key_id, 86400.0)
    if used + records > limit:
        raise ApiError(429, "quota_exceeded", f"this key sent its {limit} records for the "
                       "day; the rest waits in the probe's spool", {"Retry-After": "3600"})
    def count(conn: sa.Connection, stored: int) -> None:
        counters.add(conn, "ingest_quota", probe.key_id, 86400.0, stored)

    return count


@router.get("/api/v1/measurements")
async def query(services: ServicesDep, filters: FiltersDep,
                cursor: Annotated[str | None, Query(max_length=40)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    """Stored records matching the filters, oldest first (in order of
    arrival; with `since` or `until`, in order of `started_at`, then arrival),
    `limit` at a time; pass `next_cursor` back as `cursor`, with the same
    filters, for the next page (null at the end). Cursors are opaque; each
    page costs the same at any depth (keyset paging)."""
    if cursors.by_time(filters) and (cursor is None or not cursor.isdigit()):
        timed = cursors.parse_timed(cursor, filters) if cursor else None
        rows, after = await run_in_threadpool(services.store.page_by_time, filters, timed,
                                              limit)
        return _json({"items": [item(r) for r in rows],
                      "next_cursor": None if after is None else cursors.make_timed(after,
                                                                                   filters)})
    seq = cursors.parse(cursor, filters)
    rows, next_seq = await run_in_threadpool(services.store.page, filters, seq, limit)
    return _json({"items": [item(r) for r in rows],
                  "next_cursor": None if next_seq is None else cursors.make(next_seq, filters)})


