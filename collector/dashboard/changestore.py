"""Detected changes, kept in `dash_change`: series whose rollups moved since the
last look (`dash_series.dirty`, set at ingest) are run through the detector
again (collector/dashboard/changes.py); a change that moved by a few days as
data arrived is updated in place, so subscribers hear of it once. New changes
queue a webhook delivery for each matching subscription, in the same
transaction (collector/dashboard/alerts.py sends them)."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from collector.dashboard.cells import Series, day_counts_by_series
from collector.dashboard.changes import ChangePoint, Day, detect
from collector.db.busy import locked
from collector.db.engine import write_options
from collector.db.locks import lock_series
from collector.db.schema import (
    dash_change,
    dash_delivery,
    dash_series,
    dash_subscription,
    leases,
)
from collector.limits import Leases
from probe.core.record import utcnow

SAME_CHANGE = timedelta(days=3)  # a change re-detected this close is the same change
BATCH = 50  # series per write transaction
LEASE, LEASE_SECONDS = "dash_refresh", 600.0  # a refresher that died frees it then
PAGE_WAIT = 5.0  # seconds a page waits for another process's refresh to end
BUSY_QUIET = 60.0  # ... and, if it did not, seconds pages then show what is stored
# pacing marks, rows of `leases` (their expires_at): when the background's next
# refresh is due, and until when pages show changes without refreshing
DUE, QUIET, MARK_KIND = "dash_refresh_due", "dash_refresh_quiet", "dash_mark"
SHARE = 0.1  # of one core, at most, for change detection, by the background or by pages
COSTLY = 0.1  # seconds: a refresh this long makes pages pause (page_pause)
_PAGE_REFRESH = threading.Lock()  # page views of this process, one refresh at a time


@dataclass(frozen=True)
class StoredChange:
    id: int
    series: Series
    kind: str
    at: date
    after: date
    confidence: float
    probes: int
    detected_at: datetime

    def as_json(self) -> dict[str, Any]:
        s = self.series
        return {"service": s.service, "role": s.role, "cc": s.cc or None, "asn": s.asn,
                "operator": s.operator or None, "as_org": s.as_org, "link_type": s.link,
                "kind": self.kind, "at": self.at.isoformat(), "after": self.after.isoformat(),
                "confidence": self.confidence, "probes": self.probes,
                "detected_at": self.detected_at.isoformat().replace("+00:00", "Z")}


def series_days(conn: sa.Connection, series_ids: list[int]) -> dict[int, list[Day]]:
    """Each series' history for the detector, read at once: one row a day
    (not one per probe and day), so a refresh reads as many rows as the
    series have days."""
    found = day_counts_by_series(conn, series_ids)
    return {series_id: [Day(day, counts["open"], counts["blocked"] + counts["throttled"])
                        for day, counts in found.get(series_id, {}).items()]
            for series_id in series_ids}


def _within_share(took: float) -> float:
    """Seconds to wait after work that took `took` for it to take SHARE of the time."""
    return took * (1 - SHARE) / SHARE


def next_pause(every: float, took: float) -> float:
    """Seconds from the end of a background refresh that took `took` to the
    next: `every`, or longer so that refreshing takes at most SHARE of the time."""
    return max(every, _within_share(took))


def page_pause(took: float) -> float:
    """Seconds after a refresh that took `took` during which pages show the
    changes it found without refreshing again: none after a cheap one (pages
    are then never behind the data), else long enough that refreshes caused
    by page views take at most SHARE of one core, however many come."""
    return 0.0 if took < COSTLY else _within_share(took)


class _Busy(Exception):
    """Another process holds the refresh lease."""


class ChangeStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def refresh(self, limit: int = 10_000) -> int:
        """Bring changes up to date before a page or the API answers; the
        number of new changes.

        Dirty series are re-detected (at most `limit`) unless the last refresh
        was costly and recent (page_pause): dashboard pages are public, and
        each view during steady ingest would otherwise re-run the detector over
        every series ingest touched. Views in one process queue on a lock, not
        on the database, and find the work done by the one before them. Another
        process's refresh is waited for (PAGE_WAIT), so that a page does not
        show less than the data says; one that outlasts that (a large store, or
        a process killed while it held the lease, which frees it only after
        LEASE_SECONDS) makes pages show what is stored for BUSY_QUIET, instead
        of each view in the queue waiting in turn."""
        if self._until(QUIET) > time.time():
            return 0
        with _PAGE_REFRESH:
            if self._until(QUIET) > time.time():
                return 0
            start = time.monotonic()
            try:
                created = self._refresh_leased(limit, PAGE_WAIT)
            except _Busy:
                self._set({QUIET: BUSY_QUIET})
                return 0
            except sa.exc.OperationalError as exc:
                if not locked(exc):
                    raise
                return 0  # held by a long writer (a rebuild): the page shows what is stored
            if created is not None:
                self._set({QUIET: page_pause(time.monotonic() - start)})
            return created or 0

    def refresh_when_due(self, every: float) -> int:
        """The background loops' refresh, paced across every process: skipped
        while another process refreshes, and until the time the last one set:
        `every` seconds after it ended, or longer, so that detection takes at
        most SHARE of one core. Without the pace, each API process's loop ran
        it (four times as often with four processes), and at a year of history
        per series it took a tenth of the collector's CPU under ingest."""
        if self._until(DUE) > time.time():
            return 0
        start = time.monotonic()
        try:
            created = self._refresh_leased(10_000, 0.0)
        except _Busy:  # another process is at it
            return 0
        if created is None:  # nothing dirty
            return 0
        took = time.monotonic() - start
        self._set({DUE: next_pause(every, took), QUIET: page_pause(took)})
        return created

    def _until(self, mark: str) -> float:
        """The Unix time a pacing mark (a row of `leases`) holds, 0 if none."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(leases.c.expires_at).where(leases.c.id == mark)
                                 ).scalar()
        return float(found or 0.0)

    def _set(self, marks: dict[str, float]) -> None:
        """Each pacing mark `seconds` from now, in one write."""
        now = time.time()
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            conn.execute(sa.delete(leases).where(leases.c.id.in_(list(marks))))
            conn.execute(sa.insert(leases), [
                {"id": mark, "kind": MARK_KIND, "key_id": "-", "held": False,
                 "expires_at": now + seconds} for mark, seconds in marks.items()])

    def _refresh_leased(self, limit: int, wait: float) -> int | None:
        """The number of new changes; None if nothing was dirty; _Busy if
        another process kept the lease for `wait` seconds."""
        with self.engine.connect() as conn:  # a read first: most calls find nothing to do
            if conn.execute(sa.select(dash_series.c.id).where(dash_series.c.dirty.is_(True))
                            .limit(1)).first() is None:
                return None
        leases_, ticket = Leases(self.engine), secrets.token_hex(12)
        deadline = time.monotonic() + wait
        while not leases_.try_acquire(ticket, LEASE, "-", 1, 1, LEASE_SECONDS):
            if time.monotonic() >= deadline:  # another process is at it
                leases_.release(ticket)
                raise _Busy
            time.sleep(0.05)
        try:
            return self._refresh(limit)
        finally:
            leases_.release(ticket)

    def _refresh(self, limit: int) -> int:
        created = done = 0
        while done < limit:
            ids = self._claim()
            if not ids:
                return created
            try:
                with self.engine.connect() as conn:
                    found = {series_id: detect(days)
                             for series_id, days in series_days(conn, ids).items()}
                with self.engine.connect().execution_options(
                        **write_options(self.engine)) as conn, conn.begin():
                    for series_id in ids:
                        created += self._redetect(conn, series_id, found[series_id])
            except BaseException:
                self._mark(ids)
                raise
            done += len(ids)
        return created

    def _claim(self) -> list[int]:
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            # locked in id order, and those an upload holds skipped: the detector never
            # waits for an upload (which marks them again anyway; collector/db/locks.py)
            ids = list(conn.execute(sa.select(dash_series.c.id)
                                    .where(dash_series.c.dirty.is_(True))
                                    .order_by(dash_series.c.id).limit(BATCH)
                                    .with_for_update(skip_locked=True)).scalars())
            if ids:
                conn.execute(sa.update(dash_series).where(dash_series.c.id.in_(ids))
                             .values(dirty=False))
            return ids

    def _mark(self, ids: list[int]) -> None:
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            lock_series(conn, ids)
            conn.execute(sa.update(dash_series).where(dash_series.c.id.in_(ids))
                         .values(dirty=True))

    def _redetect(self, conn: sa.Connection, series_id: int, found: list[ChangePoint]
                  ) -> int:
        c = dash_change.c
        existing = conn.execute(sa.select(c.id, c.kind, c.at).where(c.series_id == series_id)
                                ).all()
        unmatched = {row.id: row for row in existing}
        new_ids = []
        for point in found:
            match = next((row for row in unmatched.values() if row.kind == point.kind
                          and abs(row.at - point.at) <= SAME_CHANGE), None)
            values = {"at": point.at, "after": point.after, "confidence": point.confidence,
                      "probes": point.probes}
            if match is not None:
                del unmatched[match.id]
                conn.execute(sa.update(dash_change).where(c.id == match.id).values(**values))
                continue
            new_ids.append(conn.execute(sa.insert(dash_change).values(
                series_id=series_id, kind=point.kind, detected_at=utcnow(), **values)
                .returning(c.id)).scalar_one())
        if unmatched:
            conn.execute(sa.delete(dash_delivery).where(
                dash_delivery.c.change_id.in_(list(unmatched)),
                dash_delivery.c.status == "pending"))
            conn.execute(sa.delete(dash_change).where(c.id.in_(list(unmatched))))
        if new_ids:
            self._queue(conn, series_id, new_ids)
        return len(new_ids)

    def _queue(self, conn: sa.Connection, series_id: int, change_ids: list[int]) -> None:
        series = conn.execute(sa.select(dash_series).where(dash_series.c.id == series_id)).one()
        s = dash_subscription.c
        asn = int(series.operator[2:]) if series.operator.startswith("AS") else None
        subs = conn.execute(sa.select(s.id).where(
            s.active.is_(True),
            sa.or_(s.cc.is_(None), s.cc == series.cc),
            sa.or_(s.asn.is_(None), s.asn == asn),
            sa.or_(s.service.is_(None), s.service == series.service))).scalars().all()
        now = utcnow()
        rows = [{"subscription_id": sub, "change_id": change, "status": "pending",
                 "attempts": 0, "next_at": now} for sub in subs for change in change_ids]
        if rows:
            conn.execute(sa.insert(dash_delivery), rows)

    def list(self, *, service: str | None = None, role: str | None = None,
             cc: str | None = None, asn: int | None = None, link: str | None = None,
             operator: str | None = None, since: date | None = None,
             until: date | None = None, limit: int = 500) -> list[StoredChange]:
        c, s = dash_change.c, dash_series.c
        query = (sa.select(c.id, c.kind, c.at, c.after, c.confidence, c.probes, c.detected_at,
                           s.id.label("sid"), s.service, s.role, s.cc, s.operator, s.link,
                           s.as_org)
                 .select_from(dash_change.join(dash_series, s.id == c.series_id))
                 .order_by(c.at.desc(), s.service, s.role, s.cc, s.operator, s.link)
                 .limit(limit))
        for value, column in ((service, s.service), (role, s.role), (link, s.link),
                              (operator, s.operator)):
            if value is not None:
                query = query.where(column == value)
        if cc is not None:
            query = query.where(s.cc == cc.upper())
        if asn is not None:
            query = query.where(s.operator == f"AS{asn}")
        if since is not None:
            query = query.where(c.at >= since)
        if until is not None:
            query = query.where(c.at <= until)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [StoredChange(r.id, Series(r.sid, r.service, r.role, r.cc, r.operator, r.link,
                                          r.as_org), r.kind, r.at, r.after, r.confidence,
                             r.probes, r.detected_at) for r in rows]


def as_points(changes: list[StoredChange]) -> list[ChangePoint]:
    return [ChangePoint(c.kind, c.at, c.after, c.confidence, c.probes) for c in changes]
