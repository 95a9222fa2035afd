"""Receipts: the collector's signed word that it stored a record (docs/evidence.md).

Each `accepted` or `duplicate` ingest result carries
`{record_id, record_sha256, log_index, received_at, signature}`, signed by the
collector key (collector/identity.py) over its RFC 8785 form without
`signature`. The probe deletes its copy of a record only against a receipt
that verifies with the key it pinned and names that record's hash; with the
index it later asks the log for an inclusion proof (`voipwatch-probe audit`).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from collector.batch import Element
from collector.identity import CollectorKey
from collector.store import Stored
from collector.translog import leaf_hash_of_row
from probe.core.evidence import record_sha256
from probe.core.record import rfc3339


def digest_of(element: Element) -> str:
    """record_sha256 of an ingested record, from the parse ingest already made."""
    if element.fast:  # floats are canonical fragments already (collector/batch.py)
        try:
            return record_sha256(element.value, parsed=True)
        except (ValueError, TypeError, RecursionError):
            pass
    return record_sha256(json.loads(element.text))


def prepare(row: dict[str, Any], element: Element) -> None:
    """Add the record's hash to a measurements row, and the hash of its log leaf
    (`leaf_hash`, not a column: made of the row's columns, collector/translog.py)."""
    row["record_sha256"] = digest_of(element)
    row["log_index"] = None
    row["leaf_hash"] = leaf_hash_of_row(row)


def receipt(key: CollectorKey, record_id: str, stored: Stored) -> dict[str, Any]:
    body = {"record_id": record_id, "record_sha256": stored.record_sha256,
            "log_index": stored.log_index, "received_at": _rfc3339(stored.received_at)}
    # what probe.core.evidence.sign_object signs, without its general walk: every
    # value is an ASCII string (a UUID, hex, a time), null or an integer below
    # 2**53, so orjson's sorted output is the RFC 8785 form (probe/core/canonical.py)
    signature = key.sign(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return {**body, "signature": {"alg": "ed25519", "key_id": key.key_id,
                                  "value": base64.b64encode(signature).decode()}}


@lru_cache(maxsize=64)  # one time per batch (a duplicate's: its first arrival)
def _rfc3339(moment: datetime) -> str:
    return rfc3339(moment)
