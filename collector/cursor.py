"""Opaque keyset cursors for `GET /api/v1/measurements`.

A page ends at a row's `seq`; the next page starts after it (`seq > after`,
read in `seq` order from an index), so page 9,000,000 costs what page 1
does. The cursor carries that `seq` and a fingerprint of the filters it was
made for, as `k` + base64url (8 bytes of seq, 6 of fingerprint): a client
cannot mix one query's cursor into another by mistake. A bare decimal `seq`
(the form cursors had before) is still accepted, with any filters.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib

from collector.errors import ApiError
from collector.store import Filters

MAX_SEQ = 2**63 - 1
_PREFIX = "k"


def _fingerprint(filters: Filters) -> bytes:
    fields = dataclasses.replace(filters, log_size=None)
    return hashlib.sha256(repr(dataclasses.astuple(fields)).encode()).digest()[:6]


def make(seq: int, filters: Filters) -> str:
    raw = seq.to_bytes(8, "big") + _fingerprint(filters)
    return _PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse(cursor: str | None, filters: Filters) -> int | None:
    """The `seq` to continue after; 400 `bad_cursor` for anything this
    collector did not hand out for these filters."""
    if cursor is None or cursor == "":
        return None
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 19 and int(cursor) <= MAX_SEQ:
        return int(cursor)
    if cursor.isascii() and cursor.startswith(_PREFIX) and len(cursor) == 20:
        try:
            raw = base64.urlsafe_b64decode(cursor[1:] + "=")
        except (binascii.Error, ValueError):
            raw = b""
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == cursor[1:]
        if len(raw) == 14 and canonical and int.from_bytes(raw[:8], "big") <= MAX_SEQ:
            if raw[8:] != _fingerprint(filters):
                raise ApiError(400, "bad_cursor", "cursor: it belongs to a query with other "
                               "filters; pass next_cursor back with the same filters")
            return int.from_bytes(raw[:8], "big")
    raise ApiError(400, "bad_cursor", "cursor: pass back a next_cursor value unchanged")
