"""`GET /api/v1/attribution`: the test helper tells a probe which country and
network the address of this very connection belongs to, so the probe can sign
them into its records (docs/evidence.md, "Attribution").

Signed request (a registered probe). The address is looked up in the
operator's `.mmdb` files (or the bundled data) and forgotten: it is not
stored, not logged, and echoed back only when the probe asks (`echo=true`,
for a probe doing its own look-ups in a local `.mmdb`). `resolver=IP`: also
the AS of a resolver address the probe learnt (it is public by then; a
private one gets nothing).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collector.auth import SignedProbe
from collector.errors import ApiError
from collector.services import ServicesDep

router = APIRouter(tags=["control"])


@router.get("/api/v1/attribution")
async def attribution(request: Request, probe: SignedProbe, services: ServicesDep,
                      echo: bool = False,
                      resolver: Annotated[str | None, Query(max_length=45)] = None) -> Response:
    """`{cc, asn, as_org, source, date}` of the address this request came from;
    with `resolver`, also `resolver: {asn, as_org}`; with `echo`, `address`."""
    del probe  # a registered, unrevoked key: nothing else is needed of it
    if not services.settings.control_enabled:
        raise ApiError(403, "control_disabled", "this collector runs no test helper")
    address = request.client.host if request.client else None
    if resolver is not None:
        try:
            ipaddress.ip_address(resolver)
        except ValueError:
            raise ApiError(400, "bad_resolver", "resolver: expected an IP address") from None

    def look() -> dict[str, Any]:
        found = services.enricher.lookup(address)
        out: dict[str, Any] = {"cc": found.cc, "asn": found.asn, "as_org": found.as_org,
                               "source": found.source, "date": found.date}
        if resolver is not None:
            other = services.enricher.lookup(resolver)
            out["resolver"] = {"asn": other.asn, "as_org": other.as_org}
        if echo:
            out["address"] = address
        return out

    return Response(orjson.dumps(await run_in_threadpool(look)), media_type="application/json",
                    headers={"Cache-Control": "no-store"})
