"""Query-string filters shared by the measurements and export routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query

from collector.errors import ApiError
from collector.store import Filters
from probe.core.record import CheckName, LinkType, Role, Upstream, Verdict


def filters(
    service: Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$", max_length=64)] = None,
    verdict: Verdict | None = None,
    link_type: LinkType | None = None,
    cc: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
    asn: Annotated[int | None, Query(ge=0, le=2**32 - 1)] = None,
    since: Annotated[datetime | None, Query(description="started_at >= since (RFC 3339)")
                     ] = None,
    until: Annotated[datetime | None, Query(description="started_at < until (RFC 3339)")
                     ] = None,
    check: CheckName | None = None,
    role: Role | None = None,
    key_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    upstream: Annotated[Upstream | None, Query(
        description="the network behind the access link (network.upstream; a record "
                    "without one counts as unknown)")] = None,
) -> Filters:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ApiError(400, "bad_filter", f"{name}: give a time zone, e.g. "
                           "2016-01-07T00:00:00Z")
    return Filters(service=service, verdict=verdict and str(verdict),
                   link_type=link_type and str(link_type), cc=cc, asn=asn, since=since,
                   until=until, check=check and str(check), role=role and str(role),
                   key_id=key_id, upstream=upstream and str(upstream))


FiltersDep = Annotated[Filters, Depends(filters)]


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit():
        raise ApiError(400, "bad_cursor", "cursor: pass back a next_cursor value unchanged")
    return int(cursor)
