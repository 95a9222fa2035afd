"""Query-string filters shared by the measurements and export routes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
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
    since: Annotated[str | None, Query(description="started_at >= since (RFC 3339)",
                                       max_length=40, json_schema_extra={"format": "date-time"})
                     ] = None,
    until: Annotated[str | None, Query(description="started_at < until (RFC 3339)",
                                       max_length=40, json_schema_extra={"format": "date-time"})
                     ] = None,
    check: CheckName | None = None,
    role: Role | None = None,
    key_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    upstream: Annotated[Upstream | None, Query(
        description="the network behind the access link (network.upstream; a record "
                    "without one counts as unknown)")] = None,
) -> Filters:
    return Filters(service=service, verdict=verdict and str(verdict),
                   link_type=link_type and str(link_type), cc=cc, asn=asn,
                   since=parse_time("since", since), until=parse_time("until", until),
                   check=check and str(check), role=role and str(role), key_id=key_id,
                   upstream=upstream and str(upstream))


FiltersDep = Annotated[Filters, Depends(filters)]

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,6})?\d*"
                      r"([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)


def parse_time(name: str, text: str | None) -> datetime | None:
    """An RFC 3339 time with its zone, in UTC; 400 `bad_filter` for anything else,
    extreme offsets and years that leave the calendar once in UTC included."""
    if text is None or text == "":
        return None
    match = _RFC3339.match(text)
    if match is None:
        raise ApiError(400, "bad_filter", f"{name}: expected an RFC 3339 time with a time "
                       "zone, e.g. 2016-01-07T00:00:00Z")
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{fraction or ''}{zone}")
        if abs(moment.utcoffset().total_seconds()) >= 86400:  # type: ignore[union-attr]
            raise ValueError("offset")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, "bad_filter", f"{name}: {text!r} is not a time this collector "
                       "can compare (date, offset or year out of range)") from None
