"""Alerts: webhook subscriptions, their signed deliveries, and the background
loop that detects changes and sends them.

A subscription (managed by the collector's operators: `voipwatch-collector
subscription add|list|remove`, or the operator-authenticated
`/api/v1/subscriptions` routes) names a URL and optional filters (country,
ASN, service). Each detected change that matches is POSTed there once as JSON:

    {"type": "voipwatch.change", "change": {service, role, cc, asn, operator,
     as_org, link_type, kind, at, after, confidence, probes, detected_at, url}}

signed with the subscription's own secret (shown once, at creation):
`X-Voipwatch-Signature: sha256=HEX`, the HMAC-SHA256 of
`TIMESTAMP + "." + BODY` with `X-Voipwatch-Timestamp: TIMESTAMP` (Unix
seconds). The receiver recomputes it and refuses old timestamps. Each
delivery is also signed with the collector's own Ed25519 key (the one its
receipts and tree heads carry, published at `/api/v1/collector`):
`X-Voipwatch-Collector-Signature: ed25519=BASE64` over the same
`TIMESTAMP + "." + BODY`, with `X-Voipwatch-Collector-Key: KEY_ID`: anyone
the alert is forwarded to can check that this collector sent it, without
the subscriber's secret. A failed
delivery (no 2xx answer) is retried with backoff, up to MAX_ATTEMPTS.
Deliveries are claimed in the database, so several workers never send one twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from collector.dashboard.cells import Series
from collector.dashboard.changestore import ChangeStore, StoredChange
from collector.db.busy import locked
from collector.db.engine import write_options
from collector.db.schema import dash_change, dash_delivery, dash_series, dash_subscription
from collector.identity import CollectorKey
from probe.core.errors import UserError
from probe.core.record import utcnow

log = logging.getLogger("collector.alerts")
MAX_ATTEMPTS = 8
CLAIM = timedelta(minutes=2)  # how long a claimed delivery is left to its sender


@dataclass(frozen=True)
class Subscription:
    id: int
    url: str
    cc: str | None
    asn: int | None
    service: str | None
    note: str | None
    active: bool

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "cc": self.cc, "asn": self.asn,
                "service": self.service, "note": self.note, "active": self.active}


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"webhook URL {url!r}: expected http:// or https:// and a host")
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(bytes.fromhex(secret), str(timestamp).encode() + b"." + body,
                      hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def cell_url(base: str, series: Series, **extra: str) -> str:
    query = {"service": series.service, "role": series.role, "cc": series.cc,
             "operator": series.operator, "link": series.link, **extra}
    return f"{base.rstrip('/')}/cell?{urlencode(query)}"


class Subscriptions:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, url: str, cc: str | None = None, asn: int | None = None,
            service: str | None = None, note: str | None = None) -> tuple[Subscription, str]:
        """A new subscription and its secret (hex), which is shown only now."""
        secret = secrets.token_hex(32)
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            new_id = conn.execute(sa.insert(dash_subscription).values(
                url=check_url(url), secret=secret, cc=cc.upper() if cc else None, asn=asn,
                service=service, note=note, created_at=utcnow(), active=True)
                .returning(dash_subscription.c.id)).scalar_one()
        return Subscription(new_id, url, cc.upper() if cc else None, asn, service, note,
                            True), secret

    def list(self) -> list[Subscription]:
        s = dash_subscription.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(s.id, s.url, s.cc, s.asn, s.service, s.note, s.active)
                                .order_by(s.id)).all()
        return [Subscription(*row) for row in rows]

    def remove(self, subscription_id: int) -> bool:
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            conn.execute(sa.delete(dash_delivery).where(
                dash_delivery.c.subscription_id == subscription_id))
            return conn.execute(sa.delete(dash_subscription).where(
                dash_subscription.c.id == subscription_id)).rowcount == 1


class Sender:
    """Sends due deliveries (called by the background loop)."""

    def __init__(self, engine: sa.Engine, base_url: str | None, timeout: float = 10.0,
                 identity: CollectorKey | None = None) -> None:
        self.engine = engine
        self.base_url = base_url
        self.timeout = timeout
        self.identity = identity

    def _claim(self, limit: int = 50) -> list[Any]:
        d, c, s, sub = dash_delivery.c, dash_change.c, dash_series.c, dash_subscription.c
        now = utcnow()
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            due = conn.execute(
                sa.select(d.subscription_id, d.change_id, d.attempts, sub.url, sub.secret,
                          c.kind, c.at, c.after, c.confidence, c.probes, c.detected_at,
                          s.id.label("sid"), s.service, s.role, s.cc, s.operator, s.link,
                          s.as_org)
                .select_from(dash_delivery.join(dash_subscription, sub.id == d.subscription_id)
                             .join(dash_change, c.id == d.change_id)
                             .join(dash_series, s.id == c.series_id))
                .where(d.status == "pending", d.next_at <= now).limit(limit)).all()
            claimed = []
            for row in due:
                done = conn.execute(sa.update(dash_delivery).where(
                    d.subscription_id == row.subscription_id, d.change_id == row.change_id,
                    d.status == "pending", d.next_at <= now).values(next_at=now + CLAIM))
                if done.rowcount == 1:
                    claimed.append(row)
        return claimed

    def send_due(self) -> int:
        sent = 0
        claimed = self._claim()
        if not claimed:
            return 0
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            for row in claimed:
                error = self._post(client, row)
                self._record(row, error)
                sent += error is None
        return sent

    def _post(self, client: httpx.Client, row: Any) -> str | None:
        series = Series(row.sid, row.service, row.role, row.cc, row.operator, row.link,
                        row.as_org)
        change = StoredChange(row.change_id, series, row.kind, row.at, row.after,
                              row.confidence, row.probes, row.detected_at).as_json()
        if self.base_url:
            change["url"] = cell_url(self.base_url, series)
        body = orjson.dumps({"type": "voipwatch.change", "change": change})
        stamp = int(time.time())
        headers = {"content-type": "application/json", "x-voipwatch-event": "change",
                   "x-voipwatch-delivery": f"{row.subscription_id}-{row.change_id}",
                   "x-voipwatch-timestamp": str(stamp),
                   "x-voipwatch-signature": sign(row.secret, stamp, body)}
        if self.identity is not None:
            signature = self.identity.sign(str(stamp).encode() + b"." + body)
            headers["x-voipwatch-collector-key"] = self.identity.key_id
            headers["x-voipwatch-collector-signature"] = \
                "ed25519=" + base64.b64encode(signature).decode()
        try:
            answer = client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        return None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"

    def _record(self, row: Any, error: str | None) -> None:
        d = dash_delivery.c
        attempts = row.attempts + 1
        if error is None:
            values: dict[str, Any] = {"status": "sent", "attempts": attempts, "last_error": None}
        else:
            log.warning("webhook delivery failed", extra={"event": "webhook_failed",
                                                          "subscription": row.subscription_id,
                                                          "error": error})
            values = {"attempts": attempts, "last_error": error,
                      "status": "failed" if attempts >= MAX_ATTEMPTS else "pending",
                      "next_at": utcnow() + timedelta(seconds=min(30 * 2 ** attempts, 6 * 3600))}
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            conn.execute(sa.update(dash_delivery).where(
                d.subscription_id == row.subscription_id, d.change_id == row.change_id)
                .values(**values))


async def background(engine: sa.Engine, base_url: str | None, every: float,
                     identity: CollectorKey | None = None) -> None:
    """Detect changes in the series ingest touched, then send what is due; forever."""
    changes, sender = ChangeStore(engine), Sender(engine, base_url, identity=identity)
    while True:
        try:
            await run_in_threadpool(changes.refresh_when_due, every)
            await run_in_threadpool(sender.send_due)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database hiccup must not end the loop
            if locked(exc):  # a long writer (a rebuild): said, not a fault
                log.warning("dashboard background work waits: the database is locked by "
                            "another writer", extra={"event": "database_busy"})
            else:
                log.exception("dashboard background work failed",
                              extra={"event": "dashboard_background_failed"})
        await asyncio.sleep(every)
