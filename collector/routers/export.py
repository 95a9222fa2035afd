"""`GET /api/v1/export?format=jsonl|csv|parquet|ooni` + filters, streamed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from collector.export import MEDIA_TYPES
from collector.export import export as export_records
from collector.query import FiltersDep
from collector.services import ServicesDep

router = APIRouter(tags=["export"])


@router.get("/api/v1/export")
def export(services: ServicesDep, filters: FiltersDep,
           format: Literal["jsonl", "csv", "parquet", "ooni"] = "jsonl") -> StreamingResponse:
    """Every matching record with the collector's additions (docs/export.md);
    re-verify a JSONL export offline with `voipwatch-probe verify FILE`."""
    body = export_records(services.store, filters, format)  # addresses never leave over HTTP
    return StreamingResponse(body, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="voipwatch-export.{_suffix(format)}"'})


def _suffix(format: str) -> str:
    return "ooni.jsonl" if format == "ooni" else format
