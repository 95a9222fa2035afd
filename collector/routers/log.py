"""The collector's key and its transparency log (docs/evidence.md):
`GET /api/v1/collector`, `/api/v1/log/head`, `/api/v1/log/heads`,
`/api/v1/log/inclusion`, `/api/v1/log/consistency`, `/api/v1/log/leaves`."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collector.errors import ApiError
from collector.services import ServicesDep
from collector.translog import LogRangeError

router = APIRouter(tags=["evidence"])
MAX_LEAVES = 10_000

Index = Annotated[int, Query(ge=0, le=2**53)]


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def _call(function: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args)
    except LogRangeError as exc:
        raise ApiError(400, "bad_range", str(exc)) from None


@router.get("/api/v1/collector")
async def collector(services: ServicesDep) -> Response:
    """The collector's own Ed25519 key: it signs receipts and tree heads. Probes
    pin it at registration."""
    out: dict[str, Any] = services.identity.public()
    if services.settings.whoami_zone and services.settings.whoami_listen:
        out["whoami_zone"] = services.settings.whoami_zone  # for the resolver's network
    return _json(out)


@router.get("/api/v1/log/head")
async def head(services: ServicesDep) -> Response:
    """The signed head of the log at its current size: `{tree_size, root_hash,
    timestamp, signature}` (signed at most a minute ago)."""
    return _json(await _call(services.log.head))


@router.get("/api/v1/log/heads")
async def heads(services: ServicesDep, after: Annotated[int, Query(ge=-1, le=2**53)] = -1,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    """The first head signed at each size, by size: the history auditors compare."""
    return _json({"items": await _call(services.log.heads, after, limit)})


@router.get("/api/v1/log/inclusion")
async def inclusion(services: ServicesDep, index: Index, tree_size: Index) -> Response:
    """The leaf at `index` and its RFC 9162 inclusion proof in the tree of
    `tree_size` entries: `{index, tree_size, leaf, leaf_hash, audit_path}`."""
    return _json(await _call(services.log.inclusion, index, tree_size))


@router.get("/api/v1/log/consistency")
async def consistency(services: ServicesDep, first: Index, second: Index) -> Response:
    """The RFC 9162 consistency proof between the trees of `first` and `second`
    entries: `{first, second, consistency_path}`."""
    return _json(await _call(services.log.consistency, first, second))


@router.get("/api/v1/log/leaves")
async def leaves(services: ServicesDep, start: Index,
                 end: Index) -> Response:
    """The leaves `start <= index < end` (at most 10,000): `{"items": [{index, leaf}]}`."""
    if end < start or end - start > MAX_LEAVES:
        raise ApiError(400, "bad_range", f"need start <= end <= start + {MAX_LEAVES}")

    def read() -> list[dict[str, Any]]:
        size = services.log.size()
        return [{"index": i, "leaf": orjson.Fragment(text)} if text is not None
                else {"index": i, "redacted": gone.hex() if gone else None}
                for i, text, gone in services.log.leaves(start, min(end, size))]
    return _json({"items": await _call(read)})
