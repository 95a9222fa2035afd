"""`POST /api/v1/measurements` (ingest a batch) and `GET /api/v1/measurements`
(filtered, cursor-paged)."""

from __future__ import annotations

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
from collector.limits import OverLimit
from collector.query import FiltersDep
from collector.services import ServicesDep
from collector.store import QuotaCharge

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
    try:
        outcomes = await run_in_threadpool(ingestor.ingest, elements, origin,
                                           address if settings.keep_ip else None, quota)
    except OverLimit as exc:
        raise _over_quota(settings.ingest_quota_per_day, exc.subject) from None
    # several API processes share the listening socket, and a kept-alive connection
    # stays with the process that accepted it: a few busy uploaders could pin one
    # process at 100 % while the next idled (measured: 3:1). Closing after each
    # batch lets the next one go to whichever process accepts first: an idle one.
    spread = {"Connection": "close"} if settings.workers > 1 else None
    return _json({"results": [o.as_json() for o in outcomes]}, headers=spread)


async def _quota(request: Request, services: ServicesDep, records: int) -> QuotaCharge:
    """Records per key per day, across all workers, whoever sends them: the
    quota binds the key whose records are stored, so an unsigned upload of a
    key's records counts against it too. A signed upload whose key has no room
    left is refused before anything is parsed further; the exact count is made
    in the transaction that stores the records, each key's new records against
    its own quota, and a batch that would take any key over is refused whole
    (429: nothing written, the probe keeps its records)."""
    limit = services.settings.ingest_quota_per_day
    counters = services.control.counters
    probe = request.scope.get("state", {}).get("probe")
    if probe is not None and records:
        used = await run_in_threadpool(counters.usage, "ingest_quota", probe.key_id, 86400.0)
        if used + records > limit:
            raise _over_quota(limit, probe.key_id)

    def charge(conn: sa.Connection, stored: dict[str, int]) -> None:
        for key_id, count in sorted(stored.items()):
            if not counters.charge(conn, "ingest_quota", key_id, limit, 86400.0, count):
                raise OverLimit(key_id)

    return charge


def _over_quota(limit: int, key_id: str) -> ApiError:
    return ApiError(429, "quota_exceeded", f"key {key_id} sent its {limit} records for the "
                    "day; the rest waits in the probe's spool", {"Retry-After": "3600"})


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


