"""The transparency log: every stored record's leaf appended to an append-only
Merkle tree (RFC 9162 hashing, probe/core/merkle.py), in the database.

- Appends happen inside the ingest transaction (`lock` then `append`): a record
  is stored if and only if it is in the log, at the index its receipt names.
  `lock` reads the one `log_state` row FOR UPDATE (PostgreSQL; SQLite writers
  are serialised by BEGIN IMMEDIATE already), so indexes follow commit order.
- Storage: a leaf is made of its record's row in `measurements` (at
  `log_index`): the record's hash and the columns exports filter on, which
  never change once stored (`leaf_of_row`); the internal nodes of perfect
  subtrees are in `log_nodes` (about one per leaf), the tree's right edge in
  `log_state`. A proof reads O(log n) rows.
- Tree heads `{tree_size, root_hash, timestamp, signature}` are signed by the
  collector key (collector/identity.py) on request and at intervals; the first
  head signed at each size is kept in `log_heads`, the history auditors compare.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from collector.db.engine import write_options
from collector.db.schema import (
    log_heads,
    log_nodes,
    log_redactions,
    log_state,
    measurements,
    utc_of,
)
from collector.identity import CollectorKey
from probe.core import merkle
from probe.core.canonical import MAX_SAFE_INTEGER, CanonicalizationError
from probe.core.canonical import dumps as canonical_dumps
from probe.core.evidence import LEAF_SCHEMA, leaf_bytes, leaf_time, record_sha256, sign_object
from probe.core.record import rfc3339, utcnow

log = logging.getLogger(__name__)

STATE_ID = 1
HEAD_MAX_AGE = 60.0  # seconds a served head may be old before a fresh one is signed
CATCH_UP_CHUNK = 2000


_m = measurements.c
LEAF_COLUMNS = (_m.log_index, _m.id, _m.key_id, _m.service, _m.check_name, _m.role, _m.verdict,
                _m.link_type, _m.upstream, _m.started_at, _m.record_sha256, _m.cc, _m.asn,
                _m.attribution)


def _leaf(record_id: Any, key_id: Any, service: Any, check: Any, role: Any, verdict: Any,
          link_type: Any, upstream: Any, started_at: str, digest: Any, cc: Any, asn: Any,
          attribution: Any) -> dict[str, Any]:
    """A stored record's leaf from its columns (in LEAF_COLUMNS' order, after
    log_index), started_at already in the leaf's form."""
    return {"schema": LEAF_SCHEMA, "id": record_id, "key_id": key_id, "service": service,
            "check": check, "role": role, "verdict": verdict, "link_type": link_type,
            "upstream": upstream, "started_at": started_at, "record_sha256": digest,
            "cc": cc, "asn": asn, "attribution": attribution or "none"}


def leaf_of_row(row: Any) -> dict[str, Any]:
    """The leaf of a stored record (a row, or the dict ingest inserts): what
    probe.core.evidence.leaf_of makes from the record and its filing."""
    get = row.get if isinstance(row, dict) else row._mapping.get
    return _leaf(get("id"), get("key_id"), get("service"), get("check_name"), get("role"),
                 get("verdict"), get("link_type"), get("upstream"),
                 leaf_time(get("started_at")), get("record_sha256"), get("cc"), get("asn"),
                 get("attribution"))


# what `leaves` reads: LEAF_COLUMNS with started_at as the driver gives it
_LEAF_READ = (*LEAF_COLUMNS[:9], sa.type_coerce(_m.started_at, sa.String), *LEAF_COLUMNS[10:])


def _leaf_time_of(raw: str | datetime) -> str:
    """leaf_time of started_at as `_LEAF_READ` gives it: SQLite's text
    `YYYY-MM-DD HH:MM:SS.ffffff` (naive UTC) rewritten rather than parsed."""
    if isinstance(raw, str) and len(raw) == 26 and raw[0] != "0":  # strftime: year 999, not 0999
        return f"{raw[:10]}T{raw[11:]}Z"
    return leaf_time(utc_of(raw))


def _leaf_text(row: Any) -> bytes:
    """leaf_bytes(leaf_of_row(row)) for a `_LEAF_READ` row, in a third of its
    time: its values are strings, nulls and an ASN, so orjson's output is the
    RFC 8785 form as it stands (`parsed`; a string orjson refuses, or an ASN
    beyond 2**53, takes the reference path). Copied to its size: orjson's
    bytes keep a 4-8 KiB buffer, and a chunk is held."""
    leaf = _leaf(*row[1:9], _leaf_time_of(row[9]), *row[10:])
    asn = row[12]
    if asn is None or -MAX_SAFE_INTEGER <= asn <= MAX_SAFE_INTEGER:
        try:
            return memoryview(canonical_dumps(leaf, parsed=True)).tobytes()
        except CanonicalizationError:
            pass
    return leaf_bytes(leaf)


def leaf_hash_of_row(row: Any) -> bytes:
    return merkle.leaf_hash(leaf_bytes(leaf_of_row(row)))


class LogRangeError(ValueError):
    """A proof or head asked for beyond the tree (or an impossible range)."""


class TransLog:
    def __init__(self, engine: Engine, key: CollectorKey) -> None:
        self.engine = engine
        self.key = key
        self.dialect = engine.dialect.name
        self._latest: tuple[float, dict[str, Any]] | None = None

    # --- appends, inside the caller's write transaction -----------------------------

    def lock(self, conn: sa.Connection) -> merkle.Frontier:
        query = sa.select(log_state.c.tree_size, log_state.c.frontier).where(
            log_state.c.id == STATE_ID)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).one()
        return merkle.Frontier.unpack(int(row.tree_size), bytes(row.frontier))

    def append(self, conn: sa.Connection, frontier: merkle.Frontier,
               leaf_hashes: list[bytes]) -> None:
        """Append leaves (their hashes) after `frontier` (from `lock`) and save."""
        nodes: list[dict[str, Any]] = []
        for leaf in leaf_hashes:
            for level, index, value in frontier.append(leaf):
                nodes.append({"level": level, "idx": index, "hash": value})
        if nodes and self.dialect == "postgresql":  # one statement, arrays bound in binary
            driver = conn.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor:
                cursor.execute("INSERT INTO log_nodes (level, idx, hash) SELECT * FROM "
                               "unnest(%b::smallint[], %b::bigint[], %b::bytea[])",
                               ([n["level"] for n in nodes], [n["idx"] for n in nodes],
                                [n["hash"] for n in nodes]), binary=True)
        elif nodes:
            conn.execute(sa.insert(log_nodes), nodes)
        conn.execute(sa.update(log_state).where(log_state.c.id == STATE_ID)
                     .values(tree_size=frontier.size, frontier=frontier.pack()))

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Append the stored records that are not in the log yet (stored before
        it existed, or while it was off), oldest first; how many. `progress` is
        told the count so far after each chunk (default: a log line every million)."""
        done, after = 0, 0
        while True:
            with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                    conn.begin():
                frontier = self.lock(conn)
                m = measurements.c
                # `seq > after`: a range of the primary key from where the last chunk
                # ended (PostgreSQL would otherwise sort every unlogged row per chunk)
                rows = conn.execute(
                    sa.select(m.seq, m.record, *LEAF_COLUMNS)
                    .where(m.log_index.is_(None), m.seq > after).order_by(m.seq)
                    .limit(CATCH_UP_CHUNK)).all()
                if not rows:
                    break
                if not done:  # at start-up: minutes at millions, before the collector listens
                    log.info("entering the stored records that the transparency log lacks "
                             "(stored while it was off), oldest first",
                             extra={"event": "log_catch_up"})
                after = rows[-1].seq
                updates, leaves = [], []
                for offset, row in enumerate(rows):
                    values = dict(row._mapping)
                    values["record_sha256"] = record_sha256(json.loads(row.record))
                    leaves.append(leaf_hash_of_row(values))
                    updates.append({"b_seq": row.seq, "b_index": frontier.size + offset,
                                    "b_sha": values["record_sha256"]})
                conn.execute(sa.update(measurements).where(m.seq == sa.bindparam("b_seq"))
                             .values(log_index=sa.bindparam("b_index"),
                                     record_sha256=sa.bindparam("b_sha")), updates)
                self.append(conn, frontier, leaves)
                done += len(rows)
            if progress is not None:
                progress(done)
            elif done % 1_000_000 < len(rows):
                log.info("%d earlier records entered in the transparency log", done,
                         extra={"event": "log_catch_up"})
        if done:
            log.info("appended %d earlier records to the transparency log", done)
        return done

    # --- reads ----------------------------------------------------------------------

    def frontier(self) -> merkle.Frontier:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(log_state.c.tree_size, log_state.c.frontier)
                               .where(log_state.c.id == STATE_ID)).one()
        return merkle.Frontier.unpack(int(row.tree_size), bytes(row.frontier))

    def size(self) -> int:
        return self.frontier().size

    def _perfect(self, conn: sa.Connection, wanted: set[tuple[int, int]]
                 ) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        leaves = sorted(index for level, index in wanted if level == 0)
        if leaves:
            for row in conn.execute(sa.select(*LEAF_COLUMNS)
                                    .where(measurements.c.log_index.in_(leaves))):
                found[0, int(row.log_index)] = leaf_hash_of_row(row)
            for row in conn.execute(sa.select(log_redactions.c.log_index,
                                              log_redactions.c.leaf_hash)
                                    .where(log_redactions.c.log_index.in_(leaves))):
                found[0, int(row.log_index)] = bytes(row.leaf_hash)
        inner = sorted(p for p in wanted if p[0] > 0)
        if inner:
            for row in conn.execute(sa.select(log_nodes).where(
                    sa.tuple_(log_nodes.c.level, log_nodes.c.idx).in_(inner))):
                found[int(row.level), int(row.idx)] = bytes(row.hash)
        missing = wanted - set(found)
        if missing:
            raise RuntimeError(f"the log misses nodes {sorted(missing)[:4]}")
        return found

    def _computed(self, build: Callable[[merkle.Mth], Any]) -> Any:
        """Run a proof builder twice: once to learn which perfect subtrees it
        needs, then with their hashes fetched in one round."""
        wanted: set[tuple[int, int]] = set()

        def record(start: int, end: int) -> bytes:
            wanted.update(merkle.perfect_pieces(start, end))
            return bytes(32)

        build(record)
        with self.engine.connect() as conn:
            hashes = self._perfect(conn, wanted)

        def real(start: int, end: int) -> bytes:
            return merkle.fold([hashes[p] for p in merkle.perfect_pieces(start, end)])

        return build(real)

    def root_at(self, size: int) -> bytes:
        current = self.frontier()
        if size > current.size or size < 0:
            raise LogRangeError(f"tree_size {size}: the log has {current.size} entries")
        if size == current.size:
            return current.root()
        return self._computed(lambda mth: mth(0, size) if size else merkle.empty_root())  # type: ignore[no-any-return]

    def inclusion(self, index: int, size: int) -> dict[str, Any]:
        current = self.size()
        if not 0 <= index < size <= current:
            raise LogRangeError(f"index {index}, tree_size {size}: need 0 <= index < "
                                f"tree_size <= {current}")
        path = self._computed(lambda mth: merkle.inclusion_path(index, size, mth))
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*LEAF_COLUMNS)
                               .where(measurements.c.log_index == index)).first()
            redacted = None if row is not None else conn.execute(
                sa.select(log_redactions.c.leaf_hash)
                .where(log_redactions.c.log_index == index)).scalar_one()
        if row is None:
            return {"index": index, "tree_size": size, "leaf": None, "redacted": True,
                    "leaf_hash": bytes(redacted).hex(), "audit_path": [h.hex() for h in path]}
        leaf = leaf_of_row(row)
        return {"index": index, "tree_size": size, "leaf": leaf,
                "leaf_hash": merkle.leaf_hash(leaf_bytes(leaf)).hex(),
                "audit_path": [h.hex() for h in path]}

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        current = self.size()
        if not 0 <= first <= second <= current:
            raise LogRangeError(f"first {first}, second {second}: need 0 <= first <= second "
                                f"<= {current}")
        path = self._computed(lambda mth: merkle.consistency_path(first, second, mth))
        return {"first": first, "second": second, "consistency_path": [h.hex() for h in path]}

    def leaves(self, start: int, end: int, chunk: int = 5000
               ) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        """(index, leaf's RFC 8785 bytes, None), or (index, None, leaf hash) for
        a redacted entry, for start <= index < end, in order."""
        while start < end:
            stop = min(end, start + chunk)
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(*_LEAF_READ)
                    .where(measurements.c.log_index >= start, measurements.c.log_index < stop)
                    .order_by(measurements.c.log_index)).all()
                gone = {int(r.log_index): bytes(r.leaf_hash) for r in conn.execute(
                    sa.select(log_redactions.c.log_index, log_redactions.c.leaf_hash)
                    .where(log_redactions.c.log_index >= start,
                           log_redactions.c.log_index < stop))}
            texts = {int(row[0]): _leaf_text(row) for row in rows}
            for index in range(start, stop):
                if index in texts:
                    yield index, texts[index], None
                elif index in gone:
                    yield index, None, gone[index]
            start = stop

    # --- signed tree heads ----------------------------------------------------------

    def _sign_head(self, size: int, root: bytes) -> dict[str, Any]:
        return sign_object({"tree_size": size, "root_hash": root.hex(),
                            "timestamp": rfc3339(utcnow())}, self.key.key_id, self.key.sign)

    def _keep(self, head: dict[str, Any]) -> dict[str, Any]:
        """Store `head` as the first one of its size unless one is there; that one."""
        text = json.dumps(head, separators=(",", ":"))
        insert = (postgresql.insert(log_heads) if self.dialect == "postgresql"
                  else sqlite.insert(log_heads))
        with self.engine.begin() as conn:
            conn.execute(insert.values(tree_size=head["tree_size"], root_hash=head["root_hash"],
                                       signed_at=utcnow(), head=text)
                         .on_conflict_do_nothing(index_elements=["tree_size"]))
        return head

    def head(self) -> dict[str, Any]:
        """A head for the current size, signed at most HEAD_MAX_AGE seconds ago."""
        frontier = self.frontier()
        latest = self._latest
        if latest is not None and latest[1]["tree_size"] == frontier.size and \
                time.monotonic() - latest[0] < HEAD_MAX_AGE:
            return latest[1]
        head = self._keep(self._sign_head(frontier.size, frontier.root()))
        self._latest = (time.monotonic(), head)
        return head

    def head_at(self, size: int) -> dict[str, Any]:
        """The first head kept for `size` (signed now when there is none): the same
        bytes every time, for the operator's exports and reports. Over HTTP only
        `kept_head` (a client must not make the collector sign and keep a head
        for each past size it names)."""
        head = self.kept_head(size)
        if head is None:
            self._keep(self._sign_head(size, self.root_at(size)))
            head = self.kept_head(size)
            assert head is not None  # kept now, or by a concurrent caller
        return head

    def kept_head(self, size: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(log_heads.c.head)
                                .where(log_heads.c.tree_size == size)).scalar_one_or_none()
        return None if text is None else dict(json.loads(text))

    def heads(self, after: int, limit: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(log_heads.c.head).where(log_heads.c.tree_size > after)
                                .order_by(log_heads.c.tree_size).limit(limit)).all()
        return [json.loads(row.head) for row in rows]


async def keep_signing(log_: TransLog, interval: float) -> None:
    """Sign a head every `interval` seconds when the log grew (the heads table
    keeps the first one per size: a published history)."""
    import asyncio

    from starlette.concurrency import run_in_threadpool

    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(log_.head)
        except Exception:  # a database hiccup must not end the loop
            log.exception("signing a tree head failed")
