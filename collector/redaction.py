"""`voipwatch-collector redact`: delete a probe key's records (its volunteer
asked) and everything made of them, in one transaction.

- The records go from `measurements`; each one's leaf hash stays in
  `log_redactions`, so every proof of the transparency log stays valid and
  the deletion is public (collector/translog.py).
- The key's share of the dashboard's rollups goes too (its units, methods,
  versions, its units in each day's totals; `rollup.forget_key`): afterwards
  the rollups are what a rebuild from the remaining records makes, and the
  change detector looks at those series again.

Read in chunks of `CHUNK` (a Pi measuring hourly for a year leaves ~800,000
records), so memory stays flat whatever the key's share. Locks are taken in
the uploads' order, the series first and the log's last, so a concurrent
upload waits instead of deadlocking (PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collector.dashboard.rollup import forget_key
from collector.db.engine import write_options
from collector.db.locks import lock_series
from collector.db.schema import log_redactions, measurements
from collector.translog import LEAF_COLUMNS, TransLog, leaf_hash_of_row
from probe.core.record import utcnow

CHUNK = 5000


def redact(engine: Engine, log: TransLog, key_id: str, reason: str | None,
           progress: Callable[[int], None] | None = None) -> int:
    """Delete the records of `key_id`; the number deleted. `progress` is told
    the number deleted so far after each chunk."""
    m = measurements.c
    deleted, after, now = 0, 0, utcnow()
    with engine.connect().execution_options(**write_options(engine, patient=True)) as conn, \
            conn.begin():
        lock_series(conn)  # uploads roll up (the series' locks) before they append to the log
        log.lock(conn)  # no append meanwhile
        while True:
            rows = conn.execute(sa.select(m.seq, *LEAF_COLUMNS)
                                .where(m.key_id == key_id, m.seq > after)
                                .order_by(m.seq).limit(CHUNK)).all()
            if not rows:
                break
            logged = [row for row in rows if row.log_index is not None]
            if logged:
                conn.execute(sa.insert(log_redactions), [
                    {"log_index": row.log_index, "leaf_hash": leaf_hash_of_row(row),
                     "redacted_at": now, "reason": reason} for row in logged])
            conn.execute(sa.delete(measurements).where(
                m.key_id == key_id, m.seq > after, m.seq <= rows[-1].seq))
            deleted += len(rows)
            after = rows[-1].seq
            if progress is not None:
                progress(deleted)
        if deleted:
            forget_key(conn, key_id)
    return deleted
