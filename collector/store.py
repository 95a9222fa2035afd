"""The measurements table: batch insert (idempotent by record id), filtered
queries with keyset paging, and streaming in constant memory."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from collector.dashboard import rollup
from collector.db.engine import write_options
from collector.db.schema import UtcDateTime, measurements, probes, rejections
from collector.db.writelock import WriterTurns
from probe.core.record import utcnow

if TYPE_CHECKING:
    from collector.translog import TransLog


@dataclass(frozen=True)
class Filters:
    """Filters of `GET /api/v1/measurements`, the export route and command."""

    service: str | None = None
    verdict: str | None = None
    link_type: str | None = None
    cc: str | None = None
    asn: int | None = None
    since: datetime | None = None  # started_at >= since
    until: datetime | None = None  # started_at < until
    check: str | None = None
    role: str | None = None
    key_id: str | None = None
    upstream: str | None = None  # cellular | fixed | unknown (absent counts as unknown)
    log_size: int | None = None  # only records among the log's first `log_size` entries

    def clauses(self, unindexed: Collection[str] = ()) -> list[Any]:
        """The WHERE terms; those on the columns in `unindexed` are written so
        that SQLite uses no index for them (a unary +)."""
        c = measurements.c

        def col(column: Any) -> Any:
            if column.name not in unindexed:
                return column
            return sa.literal_column(f"+measurements.{column.name}", type_=column.type)

        out: list[Any] = []
        if self.log_size is not None:
            out.append(c.log_index < self.log_size)
        for value, column in ((self.service, c.service), (self.verdict, c.verdict),
                              (self.link_type, c.link_type), (self.asn, c.asn),
                              (self.check, c.check_name), (self.role, c.role),
                              (self.key_id, c.key_id)):
            if value is not None:
                out.append(col(column) == value)
        if self.cc is not None:
            out.append(col(c.cc) == self.cc.upper())
        if self.upstream is not None:
            out.append(sa.func.coalesce(c.upstream, "unknown") == self.upstream)
        if self.since is not None:
            out.append(col(c.started_at) >= self.since)
        if self.until is not None:
            out.append(col(c.started_at) < self.until)
        return out


# the (column, seq) indexes of keyset pages, most selective first (migration query_scale)
PAGE_INDEXES = ("key_id", "asn", "service", "verdict")
_EQUALITIES = ("key_id", "asn", "service", "verdict", "cc", "link_type", "check_name", "role")


def page_unindexed(filters: Filters) -> set[str]:
    """SQLite's access path for a page in seq order. Without statistics its
    planner takes any index with an equality, e.g. (cc, asn, link_type), then
    sorts every match: so only the most selective filter's (column, seq) index
    is left usable, or none (the table itself, in seq order) when only broad
    filters (cc, link type, check, role) are set. Time ranges stay the
    planner's choice."""
    for name in PAGE_INDEXES:
        if getattr(filters, name) is not None:
            return {other for other in _EQUALITIES if other != name}
    return set(_EQUALITIES)


def time_unindexed(filters: Filters) -> set[str]:
    """SQLite's access path for a page in (started_at, seq) order: the
    (service, started_at) or (verdict, started_at) index when one applies,
    else (started_at); each also holds the rowid, seq."""
    for name in ("service", "verdict"):
        if getattr(filters, name) is not None:
            return {other for other in _EQUALITIES if other != name}
    return set(_EQUALITIES)


_PG_ARRAY = {"String": "text[]", "Text": "text[]", "Integer": "integer[]",
             "BigInteger": "bigint[]", "UtcDateTime": "timestamptz[]", "Boolean": "boolean[]"}


@dataclass(frozen=True)
class Stored:
    """A record of a batch as the database holds it after the insert: new
    (`inserted`) or there before (a duplicate), with what its receipt names."""

    inserted: bool
    log_index: int | None
    record_sha256: str | None
    received_at: datetime

# what an exported row or an API item is made of
EXPORT_COLUMNS = (
    measurements.c.seq, measurements.c.id, measurements.c.key_id, measurements.c.service,
    measurements.c.check_name, measurements.c.role, measurements.c.transport,
    measurements.c.endpoint_host, measurements.c.endpoint_port, measurements.c.verdict,
    measurements.c.blocking, measurements.c.link_type,
    measurements.c.upstream, measurements.c.upstream_source, measurements.c.upstream_confidence,
    measurements.c.cc, measurements.c.asn,
    measurements.c.as_org, measurements.c.geoip_source, measurements.c.geoip_date,
    measurements.c.probe_ip, measurements.c.started_at, measurements.c.received_at,
    measurements.c.record, probes.c.public_key, probes.c.revoked_at.label("key_revoked_at"),
    measurements.c.record_sha256, measurements.c.log_index, measurements.c.late_seconds,
    measurements.c.attribution, measurements.c.upload_cc, measurements.c.upload_asn,
    measurements.c.upload_as_org, measurements.c.attribution_mismatch,
)


_COLUMN_NAMES = tuple(c.name for c in measurements.columns if c.name != "seq")


_LOG_INDEX = _COLUMN_NAMES.index("log_index")
_TIMES = tuple(i for i, name in enumerate(_COLUMN_NAMES)
               if isinstance(measurements.c[name].type, UtcDateTime))


def _sqlite_values(row: dict[str, Any]) -> list[Any]:
    """A row's values in the storage form SQLAlchemy gives SQLite (UtcDateTime:
    naive UTC text); a column the row leaves out is NULL."""
    values = list(map(row.get, _COLUMN_NAMES))
    for i in _TIMES:
        if values[i] is not None:
            values[i] = values[i].astimezone(UTC).replace(tzinfo=None).isoformat(
                " ", "microseconds")
    return values


class _StoredMeanwhile(Exception):
    """A record was stored by a concurrent upload between its lookup and the
    log's lock: the transaction is rolled back and run again."""


# the ingest quota, charged in the transaction that stores the records: each
# key's number of records inserted; it raises to refuse the batch (a rollback)
QuotaCharge = Callable[[sa.Connection, dict[str, int]], None]


@dataclass
class _Writes:
    """What an ingest transaction writes besides the records and the log: the
    dashboard's rollups of the records it inserts, their probes' last upload,
    the quota (`also`, with each key's number inserted) and the rejections' counts."""

    facts: dict[str, rollup.Fact]
    rejected: dict[str, int]
    also: QuotaCharge | None

    def run(self, conn: sa.Connection, inserted: list[str]) -> None:
        if inserted:  # the dashboard's rollups, in the same transaction (collector/dashboard)
            rollup.apply_facts(conn, [self.facts[record_id] for record_id in inserted])
            per_key = Counter(self.facts[record_id].key_id for record_id in inserted)
            # new records only: anyone may send a published record again (a
            # duplicate), which must not make a silent probe look alive
            conn.execute(sa.update(probes).where(probes.c.key_id.in_(sorted(per_key)))
                         .values(last_seen_at=utcnow()))
            if self.also is not None:
                self.also(conn, dict(per_key))
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        for reason, count in sorted(self.rejected.items()):
            upsert = dialect.insert(rejections).values(reason=reason, count=count)
            conn.execute(upsert.on_conflict_do_update(
                index_elements=["reason"],
                set_={"count": rejections.c.count + upsert.excluded.count}))


def _outcome(rows: list[dict[str, Any]], earlier: dict[str, Stored]) -> dict[str, Stored]:
    """Each row's id -> how it is stored: `earlier` names those stored before."""
    out = {row["id"]: Stored(True, row.get("log_index"), row.get("record_sha256"),
                             row["received_at"]) for row in rows}
    out.update(earlier)
    return out


class MeasurementStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.turns = WriterTurns(engine)

    def insert(self, rows: list[dict[str, Any]], rejected: dict[str, int],
               log: TransLog | None = None, also: QuotaCharge | None = None
               ) -> dict[str, Stored]:
        """Store `rows` and count `rejected` in one transaction; each row's id ->
        how it is stored (inserted now, or a duplicate of an earlier one). With a
        `log`, new rows are appended to it in the same transaction, in batch order;
        `also` runs in the same transaction with each key's number inserted (the
        ingest quota)."""
        if not rows and not rejected:
            return {}
        # worked out before the write lock, which every API process waits for:
        # only the writes are serialised
        facts: dict[str, rollup.Fact] = {}
        values: dict[str, list[Any]] = {}
        for row, fact in zip(rows, rollup.facts_of(rows), strict=True):
            if row["id"] not in facts:  # the first of a repeated id is the one stored
                facts[row["id"]] = fact
                if self.dialect == "sqlite":
                    values[row["id"]] = _sqlite_values(row)
        writes = _Writes(facts, rejected, also)
        while log is not None and rows and self.dialect == "postgresql":
            try:
                with self._transaction() as conn:
                    return self._insert_log_last(conn, rows, writes, log)
            except _StoredMeanwhile:
                # a concurrent upload stored some of these records: run again, which
                # finds them stored; each time fewer are new, so this ends
                continue
        with self.turns.turn(), self._transaction() as conn:
            return self._insert_log_first(conn, rows, values, writes, log)

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            yield conn

    def _insert_log_first(self, conn: sa.Connection, rows: list[dict[str, Any]],
                          values: dict[str, list[Any]], writes: _Writes,
                          log: TransLog | None) -> dict[str, Stored]:
        earlier: dict[str, Stored] = {}
        inserted: set[str] = set()
        if rows:
            if log is not None:
                # under the log's lock no other writer appends: what is not here yet
                # is new, and takes the next indexes
                frontier = log.lock(conn)
                earlier = self._stored(conn, [row["id"] for row in rows])
                rows = [row for row in rows if row["id"] not in earlier]
                for offset, row in enumerate(rows):
                    row["log_index"] = frontier.size + offset
            inserted = (self._insert_unnest(conn, rows) if self.dialect == "postgresql"
                        else self._insert_many(conn, rows, values, filtered=log is not None)
                        ) if rows else set()
            if log is not None:
                if len(inserted) != len(rows):
                    raise RuntimeError("a record appeared during a locked insert")
                log.append(conn, frontier, [row["leaf_hash"] for row in rows])
            else:
                earlier = self._stored(conn, [row["id"] for row in rows
                                              if row["id"] not in inserted])
        writes.run(conn, [row["id"] for row in rows if row["id"] in inserted])
        return _outcome(rows, earlier)

    def _insert_log_last(self, conn: sa.Connection, rows: list[dict[str, Any]],
                         writes: _Writes, log: TransLog) -> dict[str, Stored]:
        """PostgreSQL: the log's lock takes the ingest transactions one at a time
        until each commits, so it is taken last, after the rollups and counters
        (each of those locks rows in one order, and every ingest transaction takes
        the log's lock after them, so no two wait for each other in a cycle).
        Raises _StoredMeanwhile when a concurrent upload stored one of the records
        after they were looked up here: under the log's lock every other upload
        has committed, so its records are what the insert leaves out."""
        earlier = self._stored(conn, [row["id"] for row in rows])
        rows = [row for row in rows if row["id"] not in earlier]
        writes.run(conn, [row["id"] for row in rows])
        if rows:
            frontier = log.lock(conn)
            for offset, row in enumerate(rows):
                row["log_index"] = frontier.size + offset
            if len(self._insert_unnest(conn, rows)) != len(rows):
                raise _StoredMeanwhile
            log.append(conn, frontier, [row["leaf_hash"] for row in rows])
        return _outcome(rows, earlier)

    def _stored(self, conn: sa.Connection, ids: list[str]) -> dict[str, Stored]:
        if not ids:
            return {}
        c = measurements.c
        return {row.id: Stored(False, row.log_index, row.record_sha256, row.received_at)
                for row in conn.execute(sa.select(c.id, c.log_index, c.record_sha256,
                                                  c.received_at).where(c.id.in_(ids)))}

    def _insert_many(self, conn: sa.Connection, rows: list[dict[str, Any]],
                     values: dict[str, list[Any]], filtered: bool = False) -> set[str]:
        """SQLite: one executemany through the driver (SQLAlchemy's per-row parameter
        processing cost more than the insert). The transaction holds the write lock
        (BEGIN IMMEDIATE): an id not stored before this statement is inserted by it.
        `values`: each row's values (`_sqlite_values`), made before the lock;
        `filtered`: the caller already left out the ids stored before, in this
        transaction."""
        names = _COLUMN_NAMES
        before = set() if filtered else set(self._stored(conn, [row["id"] for row in rows]))
        fresh: dict[str, list[Any]] = {}
        for row in rows:
            if row["id"] not in before and row["id"] not in fresh:
                fresh[row["id"]] = row_values = values[row["id"]]
                row_values[_LOG_INDEX] = row.get("log_index")  # given under the lock
        driver = conn.connection.driver_connection  # sqlite3's: this path is SQLite's
        assert driver is not None
        driver.executemany(f"INSERT INTO measurements ({', '.join(names)}) VALUES "
                           f"({', '.join('?' * len(names))}) ON CONFLICT (id) DO NOTHING",
                           list(fresh.values()))
        return set(fresh)

    def _insert_unnest(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
        """PostgreSQL: one statement with one array per column. A multi-row VALUES
        of 500 x 21 parameters costs psycopg more to prepare than the insert itself."""
        names = [c.name for c in measurements.columns if c.name != "seq"]
        arrays = tuple([row.get(name) for row in rows] for name in names)
        casts = ", ".join(f"%b::{_PG_ARRAY[measurements.c[name].type.__class__.__name__]}"
                          for name in names)
        # binary parameters: text-format arrays would escape every record's quotes
        driver = conn.connection.driver_connection  # psycopg's: this path is PostgreSQL's
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.execute(
                f"INSERT INTO measurements ({', '.join(names)}) SELECT * FROM unnest({casts}) "
                "ON CONFLICT (id) DO NOTHING RETURNING id", arrays, binary=True)
            return {r[0] for r in cursor.fetchall()}
        finally:
            cursor.close()

    def _select(self, filters: Filters, unindexed: Collection[str] = ()) -> sa.Select[Any]:
        return (sa.select(*EXPORT_COLUMNS)
                .select_from(measurements.join(probes, probes.c.key_id == measurements.c.key_id))
                .where(*filters.clauses(unindexed)))

    def page(self, filters: Filters, after: int | None, limit: int,
             budget: int | None = None) -> tuple[list[sa.Row[Any]], int | None]:
        """Up to `limit` rows after the cursor `after` (a `seq`), oldest first,
        and the next cursor (None at the end). Fewer when their records' text
        reaches `budget` bytes (default PAGE_BYTES: a page of 1,000 records of
        64 KiB was 64 MB, for anyone to ask for at once)."""
        unindexed = page_unindexed(filters) if self.dialect == "sqlite" else set()
        query = self._select(filters, unindexed).order_by(measurements.c.seq).limit(limit + 1)
        if after is not None:
            query = query.where(measurements.c.seq > after)
        rows, more = self._bounded(query, limit + 1,
                                   self.PAGE_BYTES if budget is None else budget)
        rows = rows[:limit]
        return rows, (rows[-1].seq if more and rows else None)

    def page_by_time(self, filters: Filters, after: tuple[datetime, int] | None, limit: int
                     ) -> tuple[list[sa.Row[Any]], tuple[datetime, int] | None]:
        """A page in order of `started_at`, then arrival: what a query with a
        time range reads from the time index, at any depth, instead of every
        row before its start. `after` and the next cursor: (started_at, seq)."""
        c = measurements.c
        if after is not None:  # one lower bound on started_at: the one a planner seeks to
            since = after[0] if filters.since is None else max(filters.since, after[0])
            filters = dataclasses.replace(filters, since=since)
        unindexed = time_unindexed(filters) if self.dialect == "sqlite" else set()
        query = (self._select(filters, unindexed).order_by(c.started_at, c.seq)
                 .limit(limit + 1))
        if after is not None:  # (started_at, seq) > after
            query = query.where(sa.or_(c.started_at > after[0], c.seq > after[1]))
        rows, more = self._bounded(query, limit + 1, self.PAGE_BYTES)
        rows = rows[:limit]
        return rows, ((rows[-1].started_at, rows[-1].seq) if more and rows else None)

    # `stream`'s chunks are bounded in bytes as well as in rows: records may be
    # up to `max_record_bytes` (64 KiB) each, and 2,000 of those (125 MiB, held
    # in several copies by each export format) once made an export of 5,000
    # such records take 1.2 GB. A chunk ends once its records' text reaches
    # CHUNK_BYTES; its rows are read from the cursor in parts of at most what
    # is left of that at RECORD_BYTES a record (or the largest record seen),
    # so a chunk never holds much more than CHUNK_BYTES + one record. Records
    # of the usual size (about 1 kB) still come 2,000 to a chunk.
    CHUNK_BYTES = 8 * 1024 * 1024
    PAGE_BYTES = 4 * 1024 * 1024  # an API page's records (`page`, `page_by_time`)
    RECORD_BYTES = 64 * 1024  # the default max_record_bytes
    _RECORD = [column.name for column in EXPORT_COLUMNS].index("record")

    def stream(self, filters: Filters, chunk: int = 2000,
               budget: int | None = None) -> Iterator[list[sa.Row[Any]]]:
        """Every matching row, in chunks, oldest first: keyset paging keeps
        memory constant and no transaction open between chunks. A chunk holds
        at most `chunk` rows and about `budget` bytes of record text (default
        CHUNK_BYTES), whatever size the records are."""
        budget = self.CHUNK_BYTES if budget is None else max(1, budget)
        after: int | None = None
        while True:
            rows, after = self.page(filters, after, chunk, budget)
            if rows:
                yield rows
            if after is None:
                return

    def _bounded(self, query: Any, limit: int, budget: int) -> tuple[list[sa.Row[Any]], bool]:
        """Up to `limit` rows of `query`, read a part at a time until their
        record text reaches `budget` bytes; and whether rows may remain (False:
        the query had no more). PostgreSQL reads through a server-side cursor
        where the whole result could be large (psycopg takes it at once)."""
        rows: list[sa.Row[Any]] = []
        size, largest, at = 0, self.RECORD_BYTES, self._RECORD
        with self.engine.connect() as conn:
            # psycopg takes a whole result at once: a server-side cursor when that
            # could be more than twice the budget (not for an API page of 100,
            # which its round trips would slow)
            if self.dialect == "postgresql" and limit * self.RECORD_BYTES > 2 * budget:
                conn = conn.execution_options(stream_results=True, max_row_buffer=64)
            result = conn.execute(query)
            try:
                while len(rows) < limit and size < budget:
                    wanted = min(limit - len(rows), max(1, (budget - size) // largest))
                    part = result.fetchmany(wanted)
                    rows += part
                    if len(part) < wanted:
                        return rows, False  # the last matching row
                    lengths = [len(row[at]) for row in part]
                    size += sum(lengths)
                    largest = max(largest, *lengths)
            finally:
                result.close()
        return rows, True

    def count(self, filters: Filters | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(measurements)
        if filters is not None:
            query = query.where(*filters.clauses())
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def scan(self, filters: Filters, columns: Sequence[Any], chunk: int = 20_000
             ) -> Iterator[list[sa.Row[Any]]]:
        """`columns` of measurements (and `seq`) of every matching row, oldest
        first, in chunks: what a summary over millions of records reads (the
        report), without the records' text that `stream` carries for exports."""
        c = measurements.c
        unindexed = page_unindexed(filters) if self.dialect == "sqlite" else set()
        after: int | None = None
        while True:
            query = (sa.select(c.seq, *columns).where(*filters.clauses(unindexed))
                     .order_by(c.seq).limit(chunk))
            if after is not None:
                query = query.where(c.seq > after)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if rows:
                yield rows
            if len(rows) < chunk:
                return
            after = rows[-1].seq

    def digests_in_log_order(self, filters: Filters, chunk: int = 50_000) -> Iterator[str]:
        """record_sha256 of the matching records the log holds, in log order
        (what a dataset's hash reads), a chunk at a time: the report's way when
        its scan met them out of that order (concurrent PostgreSQL uploads may
        enter the log in another order than they inserted)."""
        c = measurements.c
        # SQLite: no filter's index, or its planner may take one and sort every
        # match for each chunk; the log's index gives the order and the range
        unindexed = {*_EQUALITIES, "started_at"} if self.dialect == "sqlite" else set()
        after = -1
        while True:
            query = (sa.select(c.log_index, c.record_sha256)
                     .where(*filters.clauses(unindexed), c.log_index > after,
                            c.record_sha256.is_not(None))
                     .order_by(c.log_index).limit(chunk))
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            yield from (row.record_sha256 for row in rows)
            if len(rows) < chunk:
                return
            after = rows[-1].log_index

    def rejection_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.reason: int(r.count) for r in conn.execute(sa.select(rejections))}
