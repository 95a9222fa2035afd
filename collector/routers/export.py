"""`GET /api/v1/export?format=jsonl|csv|parquet|ooni` + filters, streamed."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from collector import export_proof
from collector.errors import ApiError
from collector.export import MEDIA_TYPES
from collector.export import export as export_records
from collector.query import FiltersDep
from collector.services import Services, ServicesDep
from collector.store import Filters

router = APIRouter(tags=["export"])
TREE_SIZE = "X-Voipwatch-Tree-Size"


def _at_size(services: Services, filters: Filters, tree_size: int | None) -> tuple[Filters, int]:
    current = services.log.size()
    size = current if tree_size is None else tree_size
    if size > current:
        raise ApiError(400, "bad_range", f"tree_size {size}: the log has {current} entries")
    return dataclasses.replace(filters, log_size=size), size


@router.get("/api/v1/export")
def export(services: ServicesDep, filters: FiltersDep,
           format: Literal["jsonl", "csv", "parquet", "ooni"] = "jsonl",
           tree_size: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
    """Every matching record with the collector's additions (docs/export.md),
    among the log's first `tree_size` entries (default: its size now, named in
    the `X-Voipwatch-Tree-Size` header). `/api/v1/export/proof` with the same
    query gives what proves the set complete; `voipwatch-probe verify-export`
    checks both offline."""
    filters, size = _at_size(services, filters, tree_size)
    body = export_records(services.store, filters, format)  # addresses never leave over HTTP
    return StreamingResponse(body, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="voipwatch-export.{_suffix(format)}"',
        TREE_SIZE: str(size)})


def _suffix(format: str) -> str:
    return "ooni.jsonl" if format == "ooni" else format


@router.get("/api/v1/export/proof")
def proof(services: ServicesDep, filters: FiltersDep,
          format: Literal["jsonl", "csv", "parquet", "ooni"] = "jsonl",
          tree_size: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
    """The proof of an export (JSON lines: the signed tree head and filters, then
    every leaf of the log up to `tree_size`): docs/evidence.md."""
    filters, size = _at_size(services, filters, tree_size)
    body = export_proof.proof(services.log, services.identity, filters, size, format)
    return StreamingResponse(body, media_type="application/x-ndjson", headers={
        "Content-Disposition": 'attachment; filename="voipwatch-export.proof"',
        TREE_SIZE: str(size)})
