"""`GET /api/v1/export?format=jsonl|csv|parquet|ooni` + filters, streamed."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.types import Send

from collector import export_proof
from collector.errors import ApiError
from collector.export import MEDIA_TYPES
from collector.export import export as export_records
from collector.query import FiltersDep
from collector.services import Services, ServicesDep
from collector.store import Filters

router = APIRouter(tags=["export"])
TREE_SIZE = "X-Voipwatch-Tree-Size"


class _Guarded:
    """An export's pieces, taken one at a time in the server's threads, and
    closed once no piece is being made (a generator being run cannot be)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces
        self.turn = threading.Lock()
        self.closed = False

    def __iter__(self) -> _Guarded:
        return self

    def __next__(self) -> bytes:
        with self.turn:
            if self.closed:
                raise StopIteration
            return next(self.pieces)

    def close(self) -> None:
        with self.turn:
            self.closed = True
            close = getattr(self.pieces, "close", None)
            if close is not None:
                close()


class ClosingStream(StreamingResponse):
    """A streamed export whose pieces are closed when the response ends, however
    it ends. A client gone, or one the gate cut off for not reading, left the
    export's generator suspended: its reader process and the database snapshot
    it reads lived on until the garbage collector found them."""

    def __init__(self, pieces: Iterator[bytes], **kwargs: Any) -> None:
        self.guarded = _Guarded(pieces)
        super().__init__(self.guarded, **kwargs)

    async def stream_response(self, send: Send) -> None:
        whole = False
        try:
            await super().stream_response(send)
            whole = True  # every piece taken: the generator has ended on its own
        finally:
            if not whole:  # in a thread (its reads end there), even when cancelled
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.guarded.close)


def _at_size(services: Services, filters: Filters, tree_size: int | None
             ) -> tuple[Filters, int, dict[str, Any]]:
    """The filters limited to the log's first `tree_size` entries, and the size's
    signed head. Only sizes that have a kept head (`/api/v1/log/heads`): by
    default the current size, whose head is kept as `/api/v1/log/head` keeps it
    (one per size the log reaches); a past size without one is refused, so
    that no client makes the collector sign and keep a head per size it names."""
    if tree_size is None:
        head = services.log.head()
    else:
        current = services.log.size()
        if tree_size > current:
            raise ApiError(400, "bad_range", f"tree_size {tree_size}: the log has {current} "
                           "entries")
        kept = services.log.kept_head(tree_size)
        if kept is None:
            raise ApiError(400, "bad_range", f"tree_size {tree_size}: no signed tree head "
                           "was kept for this size; leave tree_size out for the current "
                           "one, or pick one from /api/v1/log/heads")
        head = kept
    size = int(head["tree_size"])
    return dataclasses.replace(filters, log_size=size), size, head


@router.get("/api/v1/export")
def export(services: ServicesDep, filters: FiltersDep,
           format: Literal["jsonl", "csv", "parquet", "ooni"] = "jsonl",
           tree_size: Annotated[int | None, Query(ge=0)] = None) -> ClosingStream:
    """Every matching record with the collector's additions (docs/export.md),
    among the log's first `tree_size` entries (default: its size now, named in
    the `X-Voipwatch-Tree-Size` header; a past size only if a signed head was
    kept for it: `/api/v1/log/heads`). `/api/v1/export/proof` with the same
    query gives what proves the set complete; `voipwatch-probe verify-export`
    checks both offline."""
    filters, size, _head = _at_size(services, filters, tree_size)
    body = export_records(services.store, filters, format)  # addresses never leave over HTTP
    return ClosingStream(body, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="voipwatch-export.{_suffix(format)}"',
        TREE_SIZE: str(size)})


def _suffix(format: str) -> str:
    return "ooni.jsonl" if format == "ooni" else format


@router.get("/api/v1/export/proof")
def proof(services: ServicesDep, filters: FiltersDep,
          format: Literal["jsonl", "csv", "parquet", "ooni"] = "jsonl",
          tree_size: Annotated[int | None, Query(ge=0)] = None) -> ClosingStream:
    """The proof of an export (JSON lines: the signed tree head and filters, then
    every leaf of the log up to `tree_size`): docs/evidence.md."""
    filters, size, head = _at_size(services, filters, tree_size)
    body = export_proof.proof(services.log, services.identity, filters, size, format, head)
    return ClosingStream(body, media_type="application/x-ndjson", headers={
        "Content-Disposition": 'attachment; filename="voipwatch-export.proof"',
        TREE_SIZE: str(size)})
