"""Receipts, the probe's side: a record leaves the spool only against the
collector's signed receipt for exactly that record (docs/evidence.md).

A receipt verifies with the collector key pinned at registration and names
the record's id and its hash (SHA-256 of its RFC 8785 form, signature
included). An on-path box answering `accepted` without the collector's key, or
a collector answering for another record, gets nothing deleted.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from probe.core.errors import CollectorUnavailable, SignatureError
from probe.core.evidence import record_sha256, verify_object
from probe.upload import client as httpc

COLLECTOR_PATH = "/api/v1/collector"


def fetch_collector_key(base_url: str, client: httpc.Client) -> bytes:
    """The collector's public key, as it publishes it (to pin or compare)."""
    try:
        response = client.get(base_url.rstrip("/") + COLLECTOR_PATH)
    except httpc.HttpError as exc:
        why = "connection failed" if isinstance(exc, httpc.ConnectError) else type(exc).__name__
        raise CollectorUnavailable(f"cannot ask {base_url} for its key: {why}") from exc
    if response.status_code != 200:
        raise CollectorUnavailable(f"{base_url} did not give its key (HTTP "
                                   f"{response.status_code}): is it a voipwatch collector "
                                   "with receipts?")
    try:
        raw = base64.b64decode(response.json()["public_key"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise CollectorUnavailable(f"{base_url} answered its key with something else") from exc
    if len(raw) != 32:
        raise CollectorUnavailable(f"{base_url} gave a key of {len(raw)} bytes, not 32")
    return raw


def claims_of(record: dict[str, Any]) -> dict[str, Any]:
    """What an audit compares with the record's log leaf, kept once the record
    itself is gone (probe.core.evidence.leaf_problems reads these fields)."""
    endpoint = record.get("endpoint") or {}
    network = record.get("network") or {}
    return {"id": record.get("id"), "started_at": record.get("started_at"),
            "service": record.get("service"), "verdict": record.get("verdict"),
            "probe": {"key_id": (record.get("probe") or {}).get("key_id")},
            "endpoint": {"check": endpoint.get("check"), "role": endpoint.get("role")},
            "network": {k: network.get(k)
                        for k in ("link_type", "upstream", "attribution", "cc", "asn")}}


class ReceiptCheck:
    def __init__(self, collector_key: bytes) -> None:
        self.collector_key = collector_key

    def check(self, record: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """The result's receipt when it is valid for `record`; SignatureError why not."""
        receipt = result.get("receipt")
        if receipt is None:
            raise SignatureError("no_receipt", "the answer carries no receipt")
        verify_object(receipt, self.collector_key, "receipt")
        try:
            same = uuid.UUID(str(receipt.get("record_id"))) == uuid.UUID(str(record["id"]))
        except ValueError:
            same = False
        if not same:
            raise SignatureError("wrong_record", "the receipt names another record")
        if receipt.get("record_sha256") != record_sha256(record):
            raise SignatureError("wrong_hash", "the receipt names another version of the record")
        index = receipt.get("log_index")
        if index is not None and (not isinstance(index, int) or index < 0):
            raise SignatureError("bad_receipt", "the receipt's log_index is not an index")
        return dict(receipt)
