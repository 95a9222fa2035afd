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
from probe.core.evidence import leaf_bytes, leaf_of, record_sha256, sign_object
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
    """Add the record's hash and its log leaf to a measurements row (filed under
    the row's cc/asn/attribution)."""
    digest = digest_of(element)
    row["record_sha256"] = digest
    row["leaf"] = leaf_bytes(leaf_of(element.value, digest, row["cc"], row["asn"],
                                     row["attribution"])).decode()
    row["log_index"] = None


def receipt(key: CollectorKey, record_id: str, stored: Stored) -> dict[str, Any]:
    return sign_object({"record_id": record_id, "record_sha256": stored.record_sha256,
                        "log_index": stored.log_index,
                        "received_at": rfc3339(stored.received_at)}, key.key_id, key.sign)
