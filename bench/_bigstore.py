"""A large store, fast: generated measurement rows written straight into the
measurements table (executemany on SQLite, COPY on PostgreSQL) and rolled up
by the dashboard's own ingest hook (`collector.dashboard.rollup.apply`, in
the same transaction), without HTTP or signature checks (bench/ingest.py
measures those). Shared by the query benches (bench/dashboard.py,
bench/queries.py) and bench/export.py at sizes (10 million) that uploading
would take an hour to reach.

The rows come from bench/dashboard.py's generator: each probe key signs one
record per endpoint and verdict once, and that text is reused for every row
of its kind while the row's columns carry the generated time and verdict. So
rows are realistic in shape and size for queries and exports, not evidence.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from collector.dashboard import rollup
from collector.db.schema import measurements, probes

CHUNK = 20_000
COLUMNS = ("id", "key_id", "service", "check_name", "role", "transport", "endpoint_host",
           "endpoint_port", "verdict", "blocking", "link_type", "cc", "asn", "as_org",
           "geoip_source", "geoip_date", "probe_ip", "started_at", "received_at", "record",
           "attribution")


def register(engine: sa.Engine, generator: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(probes), [
            {"key_id": key.key_id, "public_key": key.public_b64,
             "registered_at": dt.datetime(2014, 12, 1, tzinfo=dt.UTC), "revoked_at": None,
             "token_hash": None, "last_seen_at": None} for key, *_ in generator.keys])


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        row["attribution"] = "control"
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _write(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy(f"COPY measurements ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in COLUMNS])
        else:
            cursor.executemany(
                f"INSERT INTO measurements ({', '.join(COLUMNS)}) VALUES "
                f"({', '.join('?' * len(COLUMNS))})",
                [[_text_time(row[c]) if c in ("started_at", "received_at") else row[c]
                  for c in COLUMNS] for row in rows])
    finally:
        cursor.close()


def fill(engine: sa.Engine, generator: Any, count: int, progress: bool = True) -> float:
    """Write and roll up `count` generated rows; rows per second."""
    register(engine, generator)
    start = time.perf_counter()
    done, reported = 0, 0
    for chunk in _chunks(generator.rows(count), CHUNK):
        with engine.begin() as conn:
            _write(conn, chunk)
            rollup.apply(conn, chunk)
        done += len(chunk)
        if progress and done - reported >= 1_000_000:
            reported = done
            print(f"    {done:,} rows, {done / (time.perf_counter() - start):,.0f}/s",
                  flush=True)
    return count / (time.perf_counter() - start)


def stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(measurements))
                   .scalar_one())


def each_store(db_url: str | None, backends: list[str], prefix: str,
               bench: Callable[[str, str, Path, bool], None]) -> None:
    """Run `bench(backend, url, data_dir, fill)` on the store at `db_url`
    (filled already), or on a fresh store of each backend to fill (PostgreSQL:
    a throwaway server; skipped with a word when none can start)."""
    if db_url:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            bench("postgresql" if db_url.startswith("postgresql") else "sqlite", db_url,
                  Path(tmp), False)
        return
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            if backend == "sqlite":
                bench(backend, f"sqlite:///{tmp}/collector.sqlite3", Path(tmp), True)
                continue
            from tests.support.postgres import PostgresServer, PostgresUnavailable

            try:
                server = PostgresServer().start()
            except PostgresUnavailable as exc:
                print(f"  postgresql: skipped ({exc})")
                continue
            try:
                bench(backend, server.create_database(), Path(tmp), True)
            finally:
                server.stop()


def main() -> None:
    """`python bench/_bigstore.py URL COUNT`: migrate and fill a store once, for
    the benches to reuse (`BENCH_DB_URL=URL`)."""
    from bench.dashboard import Generator
    from collector.db.engine import make_engine
    from collector.db.migrate import upgrade

    if len(sys.argv) != 3 or not sys.argv[2].isdigit():  # `make bench` runs it bare
        print("bigstore: a helper of the query benches; fill a store with "
              "`python bench/_bigstore.py URL COUNT`")
        return
    url, count = sys.argv[1], int(sys.argv[2])
    engine = make_engine(url)
    upgrade(engine)
    rate = fill(engine, Generator(), count)
    print(f"{count:,} rows stored and rolled up, {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
