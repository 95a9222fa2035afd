"""`GET /api/v1/export?format=jsonl|csv|parquet` + filters, streamed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from collector.export import MEDIA_TYPES, WRITERS
from collector.query import FiltersDep
from collector.services import ServicesDep

router = APIRouter(tags=["export"])


@router.get("/api/v1/export")
def export(services: ServicesDep, filters: FiltersDep,
           format: Literal["jsonl", "csv", "parquet"] = "jsonl") -> StreamingResponse:
    """Every matching record with the collector's additions (docs/export.md);
    re-verify a JSONL export offline with `voipwatch-probe verify FILE`."""
    chunks = services.store.stream(filters)
    body = WRITERS[format](chunks)  # addresses never leave over HTTP
    return StreamingResponse(body, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="voipwatch-export.{format}"'})
