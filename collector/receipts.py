"""Receipts: the collector's signed word that it stored a record (docs/evidence.md).

Each `accepted` or `duplicate` ingest result carries
`{record_id, record_sha256, log_index, received_at, signature}`, signed by the
collector key (collector/identity.py) over its RFC 8785 form without
`signature`. The probe deletes its copy of a record only against a receipt
that verifies with the key it pinned and names that record's hash; with the
index it later asks the log for an inclusion proof (`voipwatch-probe audit`).
"""

from __future__ import annotations

import json
from typing import Any

from collector.batch import Element
from collector.identity import CollectorKey
from collector.store import Stored
from collector.translog import leaf_hash_of_row
from probe.core.evidence import record_sha256, sign_object
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
    return sign_object({"record_id": record_id, "record_sha256": stored.record_sha256,
                        "log_index": stored.log_index,
                        "received_at": rfc3339(stored.received_at)}, key.key_id, key.sign)
