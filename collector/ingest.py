"""`POST /api/v1/measurements`: check every record of a batch, then store the
good ones in one transaction.

A record is `accepted` only when it is a well-formed `voipwatch.measurement/1`
record (`started_at` an RFC 3339 string with a time zone, integers as JSON
integers, at most `MAX_DEPTH` levels of nesting: the stored text must read the
same to every later reader), dated within the configured bounds, signed
(Ed25519 over its RFC 8785 form) by a registered, unrevoked key. A record
whose id is already stored is a `duplicate`: never stored twice, whatever the
timing. Anything else is `rejected` with a reason from `Reason`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import ValidationError

from collector import receipts
from collector.attribution import filed
from collector.batch import Element
from collector.db.writethread import WriteThread
from collector.geoip import Enrichment
from collector.identity import CollectorKey
from collector.keys import KeyStore, ProbeRow
from collector.settings import Settings
from collector.store import MeasurementStore, QuotaCharge, Stored
from collector.tally import Tally
from collector.translog import TransLog
from probe.core.canonical import canonical_bytes
from probe.core.errors import VoipwatchError
from probe.core.record import MAX_DEPTH, Measurement, deeper_than, utcnow

MAX_SERVICE = 64
MAX_HOST = 255


class Reason(StrEnum):
    """Why a record was rejected (closed set; docs/collector.md)."""

    SCHEMA = "schema"  # not a voipwatch.measurement/1 record
    NO_SIGNATURE = "no_signature"
    KEY_MISMATCH = "key_mismatch"  # signature.key_id, probe.key_id, probe.public_key disagree
    UNKNOWN_KEY = "unknown_key"  # not registered here
    REVOKED_KEY = "revoked_key"
    BAD_SIGNATURE = "bad_signature"
    TOO_LARGE = "too_large"  # longer than max_record_bytes, evidence included
    TOO_OLD = "too_old"  # started_at older than max_record_age_days (the horizon)
    FROM_FUTURE = "from_future"  # started_at later than now + max_clock_skew_seconds


class IngestStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass
class IngestResult:
    id: str | None
    status: IngestStatus
    reason: Reason | None = None
    detail: str | None = None
    receipt: dict[str, Any] | None = None  # accepted, duplicate (collector/receipts.py)
    late_seconds: int | None = None  # accepted long after it started (settings.late_after_hours)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": str(self.status),
                               "reason": self.reason and str(self.reason)}
        if self.detail:
            out["detail"] = self.detail
        if self.receipt is not None:
            out["receipt"] = self.receipt
        if self.late_seconds is not None:
            out["late"] = {"delay_seconds": self.late_seconds}
        return out


class Rejected(VoipwatchError):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


@dataclass
class _Checked:
    element: Element
    model: Measurement
    row: dict[str, Any] = field(default_factory=dict)


class Ingestor:
    def __init__(self, settings: Settings, keys: KeyStore, store: MeasurementStore,
                 identity: CollectorKey, log: TransLog | None = None,
                 tally: Tally | None = None, writes: WriteThread | None = None) -> None:
        """`writes`: where the store's writes run (an API process's write thread;
        default: the calling thread)."""
        self.settings = settings
        self.writes = writes
        self.keys = keys
        self.store = store
        self.identity = identity
        self.log = log
        self.tally = tally or Tally()
        self._verify_keys: dict[str, VerifyKey] = {}

    def ingest(self, elements: list[Element], origin: Enrichment,
               probe_ip: str | None = None,
               quota: QuotaCharge | None = None
               ) -> list[IngestResult]:
        outcomes: list[IngestResult] = []
        checked: list[tuple[int, _Checked]] = []
        bounds = self._bounds()
        for element in elements:
            outcome = IngestResult(_record_id(element.value), IngestStatus.REJECTED)
            outcomes.append(outcome)
            try:
                checked.append((len(outcomes) - 1, self._check_shape(element, bounds)))
            except Rejected as exc:
                outcome.reason, outcome.detail = exc.reason, exc.detail

        known = self.keys.get_many(c.model.probe.key_id for _, c in checked)
        received_at = utcnow()
        rows: dict[str, tuple[int, dict[str, Any]]] = {}
        for index, item in checked:
            outcome = outcomes[index]
            try:
                self._check_signature(item, known.get(item.model.probe.key_id))
            except Rejected as exc:
                outcome.reason, outcome.detail = exc.reason, exc.detail
                continue
            row = _row(item, origin, received_at, probe_ip, self.settings.late_after_hours)
            if row["id"] in rows:  # the same record twice in one batch
                outcome.status = IngestStatus.DUPLICATE
                continue
            rows[row["id"]] = (index, row)

        rejected: dict[str, int] = {}
        for outcome in outcomes:
            if outcome.status is IngestStatus.REJECTED and outcome.reason:
                rejected[outcome.reason] = rejected.get(outcome.reason, 0) + 1
        stored = self._store([row for _, row in rows.values()], rejected, quota)
        for record_id, (index, row) in rows.items():
            outcome, where = outcomes[index], stored[record_id]
            outcome.status = IngestStatus.ACCEPTED if where.inserted else IngestStatus.DUPLICATE
            outcome.reason = None
            outcome.late_seconds = row["late_seconds"] if where.inserted else None
            outcome.receipt = receipts.receipt(self.identity, record_id, where)
        for outcome in outcomes:  # the same record twice in one batch: one receipt
            if outcome.status is IngestStatus.DUPLICATE and outcome.receipt is None and \
                    outcome.id is not None:
                where = stored.get(str(uuid.UUID(outcome.id)))
                if where is not None:
                    outcome.receipt = receipts.receipt(self.identity, str(uuid.UUID(outcome.id)),
                                                       where)
        return outcomes

    def _store(self, rows: list[dict[str, Any]], rejected: dict[str, int],
               quota: QuotaCharge | None) -> dict[str, Stored]:
        """Insert the rows; rejections are tallied in memory and written only
        along with rows, or once the tally is due: never a write per refusal."""
        self.tally.add(rejected)
        if not rows and not self.tally.due():
            return {}
        counts = self.tally.drain()

        def insert() -> dict[str, Stored]:
            return self.store.insert(rows, counts, self.log, quota)

        try:
            return self.writes.run(insert) if self.writes is not None else insert()
        except BaseException:
            self.tally.restore(counts)
            raise

    def _check_shape(self, element: Element,
                     bounds: tuple[datetime | None, datetime | None] | None = None
                     ) -> _Checked:
        if len(element.text) > self.settings.max_record_bytes or len(
                element.text.encode("utf-8", "surrogatepass")) > self.settings.max_record_bytes:
            raise Rejected(Reason.TOO_LARGE, f"the record is larger than "
                           f"{self.settings.max_record_bytes} bytes")
        if not isinstance(element.value, dict):
            raise Rejected(Reason.SCHEMA, "a record must be a JSON object")
        # the exporters' JSON writers have a limit; a text with fewer opening
        # brackets than the limit cannot nest deeper (the walk is for the rest)
        if element.text.count("{") + element.text.count("[") > MAX_DEPTH and \
                deeper_than(element.value, MAX_DEPTH):
            raise Rejected(Reason.SCHEMA, f"the record nests objects and arrays more than "
                           f"{MAX_DEPTH} levels deep")
        try:
            model = Measurement.model_validate(element.value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "record"
            raise Rejected(Reason.SCHEMA, f"{where}: {error['msg']}") from None
        if model.started_at.tzinfo is None:
            raise Rejected(Reason.SCHEMA, "started_at: must carry a time zone (RFC 3339)")
        if len(model.service) > MAX_SERVICE or len(model.endpoint.host) > MAX_HOST:
            raise Rejected(Reason.SCHEMA, "service or endpoint.host is too long")
        if model.signature is None:
            raise Rejected(Reason.NO_SIGNATURE, "the record carries no signature")
        if model.signature.key_id != model.probe.key_id:
            raise Rejected(Reason.KEY_MISMATCH, "signature.key_id differs from probe.key_id")
        self._check_age(model.started_at, bounds or self._bounds())
        return _Checked(element, model)

    def _bounds(self) -> tuple[datetime | None, datetime | None]:
        """The oldest and the latest acceptable started_at, once per batch."""
        now = utcnow()
        age_days = self.settings.max_record_age_days
        skew = self.settings.max_clock_skew_seconds
        return (now - timedelta(days=age_days) if age_days else None,
                now + timedelta(seconds=skew) if skew else None)

    def _check_age(self, started_at: datetime,
                   bounds: tuple[datetime | None, datetime | None]) -> None:
        oldest, latest = bounds
        age_days = self.settings.max_record_age_days
        if oldest is not None and started_at < oldest:
            raise Rejected(Reason.TOO_OLD, f"started_at is more than {age_days:g} days ago")
        skew = self.settings.max_clock_skew_seconds
        if latest is not None and started_at > latest:
            raise Rejected(Reason.FROM_FUTURE, f"started_at is more than {skew:g} s ahead "
                           "of the collector's clock")

    def _check_signature(self, item: _Checked, probe: ProbeRow | None) -> None:
        if probe is None:
            raise Rejected(Reason.UNKNOWN_KEY, "the signing key is not registered here")
        if probe.revoked:
            raise Rejected(Reason.REVOKED_KEY, "the signing key was revoked")
        claimed = getattr(item.model.probe, "public_key", None)
        if claimed is not None and claimed != probe.public_key:
            raise Rejected(Reason.KEY_MISMATCH, "probe.public_key is not the registered key")
        try:
            signature = base64.b64decode(str(item.model.signature.value  # _check_shape saw it
                                             if item.model.signature else ""), validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(Reason.BAD_SIGNATURE, "signature.value is not base64") from None
        if not _verifies(self._verifier(probe), _signed_bytes(item.element), signature):
            raise Rejected(Reason.BAD_SIGNATURE, "the signature does not match the record")

    def _verifier(self, probe: ProbeRow) -> VerifyKey:
        verifier = self._verify_keys.get(probe.public_key)
        if verifier is None:
            if len(self._verify_keys) > 10_000:
                self._verify_keys.clear()
            verifier = self._verify_keys[probe.public_key] = VerifyKey(probe.public_raw)
        return verifier


def _signed_bytes(element: Element) -> bytes | None:
    """The bytes the record's signature covers (None: it has none)."""
    if element.fast:  # parsed for orjson already (collector/batch.py)
        try:
            return canonical_bytes(element.value, parsed=True)
        except (ValueError, TypeError, RecursionError):  # e.g. a lone surrogate, deep nesting
            pass
    try:
        return canonical_bytes(json.loads(element.text))
    except (ValueError, TypeError, RecursionError):  # CanonicalizationError is a ValueError
        return None


def _verifies(verifier: VerifyKey, data: bytes | None, signature: bytes) -> bool:
    if data is None:
        return False
    try:
        verifier.verify(data, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def _record_id(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"][:64]
    return None


def _upstream(model: Measurement) -> dict[str, str | None]:
    """The link's upstream kind, its source and confidence, as the record says."""
    network = model.network
    return {"upstream": network.upstream and str(network.upstream),
            "upstream_source": network.upstream_source and str(network.upstream_source),
            "upstream_confidence": network.upstream_confidence
            and str(network.upstream_confidence)}


def _row(item: _Checked, origin: Enrichment, received_at: datetime,
         probe_ip: str | None, late_after_hours: float) -> dict[str, Any]:
    model = item.model
    endpoint = model.endpoint
    delay = (received_at - model.started_at).total_seconds()
    late = int(delay) if late_after_hours and delay > late_after_hours * 3600 else None
    row = {
        "id": str(model.id),  # a uuid.UUID: its canonical form
        "key_id": model.probe.key_id,
        "service": model.service,
        "check_name": str(endpoint.check),
        **_upstream(model),
        "role": str(endpoint.role),
        "transport": str(endpoint.transport),
        "endpoint_host": endpoint.host,
        "endpoint_port": endpoint.port,
        "verdict": str(model.verdict),
        "blocking": model.blocking and str(model.blocking),
        "link_type": str(model.network.link_type),
        **filed(model.network, origin),
        "late_seconds": late,
        "geoip_source": origin.source,
        "geoip_date": origin.date,
        "probe_ip": probe_ip,
        "started_at": model.started_at,
        "received_at": received_at,
        "record": item.element.text,
    }
    receipts.prepare(row, item.element)
    return row
