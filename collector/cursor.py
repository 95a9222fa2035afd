"""Opaque keyset cursors for `GET /api/v1/measurements`.

A page ends at a row's `seq`; the next page starts after it (`seq > after`,
read in `seq` order from an index), so page 9,000,000 costs what page 1
does. With a time range (`since`, `until`) pages go in order of `started_at`
then `seq`, read from the time index, and the cursor holds both. The cursor
carries those and a fingerprint of the filters it was made for, as `k` (or
`t`) + base64url (8 bytes of seq, [8 of started_at in microseconds,] 6 of
fingerprint): a client cannot mix one query's cursor into another by
mistake. A bare decimal `seq` (the form cursors had before) is still
accepted, with any filters, and pages in `seq` order.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

from collector.errors import ApiError
from collector.store import Filters

MAX_SEQ = 2**63 - 1
_PREFIX = "k"


def _fingerprint(filters: Filters) -> bytes:
    fields = dataclasses.replace(filters, log_size=None)
    return hashlib.sha256(repr(dataclasses.astuple(fields)).encode()).digest()[:6]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def by_time(filters: Filters) -> bool:
    """Whether this query's pages go in order of started_at."""
    return filters.since is not None or filters.until is not None


def make(seq: int, filters: Filters) -> str:
    raw = seq.to_bytes(8, "big") + _fingerprint(filters)
    return _PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_timed(after: tuple[datetime, int], filters: Filters) -> str:
    moment, seq = after
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    raw = seq.to_bytes(8, "big") + micros.to_bytes(8, "big", signed=True) + \
        _fingerprint(filters)
    return "t" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_timed(cursor: str, filters: Filters) -> tuple[datetime, int]:
    """A `t` cursor's (started_at, seq); 400 `bad_cursor` otherwise."""
    raw = _decode(cursor[1:], 22) if cursor.isascii() and cursor.startswith("t") else None
    if raw is not None and int.from_bytes(raw[:8], "big") <= MAX_SEQ:
        if raw[16:] != _fingerprint(filters):
            raise _other_filters()
        try:
            moment = _EPOCH + timedelta(microseconds=int.from_bytes(raw[8:16], "big",
                                                                    signed=True))
        except OverflowError:
            moment = None
        if moment is not None:
            return moment, int.from_bytes(raw[:8], "big")
    raise ApiError(400, "bad_cursor", "cursor: pass back a next_cursor value unchanged")


def _decode(text: str, size: int) -> bytes | None:
    """`size` bytes from their canonical unpadded base64url, else None."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    return raw


def _other_filters() -> ApiError:
    return ApiError(400, "bad_cursor", "cursor: it belongs to a query with other filters; "
                    "pass next_cursor back with the same filters")


def parse(cursor: str | None, filters: Filters) -> int | None:
    """The `seq` to continue after; 400 `bad_cursor` for anything this
    collector did not hand out for these filters."""
    if cursor is None or cursor == "":
        return None
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 19 and int(cursor) <= MAX_SEQ:
        return int(cursor)
    raw = _decode(cursor[1:], 14) if cursor.isascii() and cursor.startswith(_PREFIX) else None
    if raw is not None and int.from_bytes(raw[:8], "big") <= MAX_SEQ:
        if raw[8:] != _fingerprint(filters):
            raise _other_filters()
        return int.from_bytes(raw[:8], "big")
    raise ApiError(400, "bad_cursor", "cursor: pass back a next_cursor value unchanged")
