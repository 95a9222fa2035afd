"""`GET /api/v1/measurements` benchmark (`make bench`): a page of 100 records
at the start and deep in a large store, for each kind of filter, in-process
(the store's keyset query) and over HTTP (the route, JSON included), on
SQLite and PostgreSQL.

Keyset paging (collector/cursor.py) continues after the last row's `seq`
from an index that keeps each selective filter's rows in `seq` order, so a
page costs the same at any depth. The baseline, measured in the same run, is
the first page without filters: each figure is printed as its ratio (a deep
page near 1.0 costs what page 1 costs). What keyset paging replaces, the same
deep page by OFFSET, is timed once beside it.

The store is filled by bench/_bigstore.py (generated rows, rolled up, no
HTTP). `BENCH_QUERIES_RECORDS` (default 300,000), `BENCH_QUERIES_BACKENDS`
(default `sqlite,postgresql`), or `BENCH_DB_URL` to reuse a store filled
once with `python bench/_bigstore.py URL 10000000`. Target: p95 <= 50 ms.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench import _bigstore as bigstore  # noqa: E402
from bench.dashboard import Generator, timed, timed_http  # noqa: E402
from collector import cursor as cursors  # noqa: E402
from collector.dashboard.changestore import ChangeStore  # noqa: E402
from collector.db.engine import make_engine  # noqa: E402
from collector.db.migrate import upgrade  # noqa: E402
from collector.db.schema import measurements  # noqa: E402
from collector.store import Filters, MeasurementStore  # noqa: E402

RECORDS = int(os.environ.get("BENCH_QUERIES_RECORDS", "300000"))
BACKENDS = os.environ.get("BENCH_QUERIES_BACKENDS", "sqlite,postgresql").split(",")
DB_URL = os.environ.get("BENCH_DB_URL")
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
LIMIT = 100
TARGET_MS = 50
DEPTH = 0.9  # the deep page starts after this share of the store


def cases(engine: sa.Engine) -> dict[str, Filters]:
    with engine.connect() as conn:
        key_id = conn.execute(sa.select(measurements.c.key_id).limit(1)).scalar_one()
    return {
        "no filter": Filters(),
        "service": Filters(service="whatsapp"),
        "service + verdict=blocked": Filters(service="whatsapp", verdict="blocked"),
        "verdict=blocked": Filters(verdict="blocked"),
        "asn + link_type": Filters(asn=36884, link_type="cellular"),
        "cc": Filters(cc="MA"),
        "key_id": Filters(key_id=key_id),
        "since (a year in)": Filters(since=dt.datetime(2016, 1, 1, tzinfo=dt.UTC)),
        "service + since": Filters(service="whatsapp",
                                   since=dt.datetime(2016, 1, 1, tzinfo=dt.UTC)),
    }


def query_string(filters: Filters) -> dict[str, str]:
    out = {}
    for name in ("service", "verdict", "link_type", "cc", "asn", "key_id"):
        if (value := getattr(filters, name)) is not None:
            out[name] = str(value)
    if filters.since is not None:
        out["since"] = filters.since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def offset_page(engine: sa.Engine, offset: int) -> int:
    """The baseline: a page by OFFSET, what keyset paging replaces."""
    with engine.connect() as conn:
        return len(conn.execute(sa.select(measurements.c.seq, measurements.c.record)
                                .order_by(measurements.c.seq).offset(offset).limit(LIMIT))
                   .all())


def bench(backend: str, url: str, data_dir: Path, fill: bool) -> None:
    from tests.collector.harness import Collector

    engine = make_engine(url)
    upgrade(engine)
    if fill:
        print(f"  {backend}: filling {RECORDS:,} rows ...", flush=True)
        rate = bigstore.fill(engine, Generator(), RECORDS)
        print(f"    {rate:,.0f} rows/s")
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(measurements.c.seq))).scalar_one()
    stored = bigstore.stored(engine)
    deep = int(last * DEPTH)
    with engine.connect() as conn:
        deep_time = (conn.execute(sa.select(measurements.c.started_at)
                                  .where(measurements.c.seq == deep)).scalar_one(), deep)
    store = MeasurementStore(engine)
    print(f"  {backend}: {stored:,} records; deep pages start after seq {deep:,}")
    start = time.perf_counter()
    offset_page(engine, deep)
    offset_ms = (time.perf_counter() - start) * 1000
    baseline = timed(lambda: store.page(Filters(), None, LIMIT))
    rows: list[tuple[str, float, float]] = []
    for name, filters in cases(engine).items():
        for where, after in (("page 1", None), ("deep", deep)):
            if cursors.by_time(filters):  # continue after the deep row's (started_at, seq)
                key = None if after is None else deep_time
                rows.append((f"{name}, {where}", *timed(
                    lambda f=filters, k=key: store.page_by_time(f, k, LIMIT))))
                continue
            rows.append((f"{name}, {where}",
                         *timed(lambda f=filters, a=after: store.page(f, a, LIMIT))))
    db = None if backend == "sqlite" and not DB_URL else url
    # the generated rows are not in the transparency log (bench/_bigstore.py): a
    # collector would append them all at start; pages do not read the log
    env = {**os.environ, "VOIPWATCH_COLLECTOR_TRANSPARENCY_LOG": "false"}
    # the steady state: the rows were rolled up without a collector, so every
    # series is waiting for change detection, which a collector would run at
    # start beside the queries (bench/dashboard.py does the same)
    ChangeStore(engine).refresh()
    with Collector(data_dir, db, env=env, default_workers=True) as running, \
            httpx.Client(base_url=running.url, timeout=60) as client:
        for name, filters in cases(engine).items():
            for where, after in (("page 1", None), ("deep", deep)):
                params: dict[str, Any] = {**query_string(filters), "limit": LIMIT}
                if after is not None:
                    params["cursor"] = (cursors.make_timed(deep_time, filters)
                                        if cursors.by_time(filters) else
                                        cursors.make(after, filters))

                def get(params: dict[str, Any] = params) -> None:
                    response = client.get("/api/v1/measurements", params=params)
                    assert response.status_code == 200, response.text

                rows.append((f"HTTP {name}, {where}", *timed_http(get)))
    print(f"    {'':44}{'p50 ms':>9}{'p95 ms':>9}{'x page 1':>10}")
    print(f"    {'baseline: page 1, no filter':44}{baseline[0]:9.1f}{baseline[1]:9.1f}{1:10.2f}")
    print(f"    {'(OFFSET ' + format(deep, ',') + ', no filter, once)':44}{offset_ms:9.1f}"
          f"{'':9}{offset_ms / baseline[1]:10.1f}")
    for name, p50, p95 in rows:
        mark = "ok" if p95 <= TARGET_MS else "OVER"
        print(f"    {name:44}{p50:9.1f}{p95:9.1f}{p95 / baseline[1]:10.2f}  "
              f"{mark} (p95 <= {TARGET_MS} ms)")
    engine.dispose()


def main() -> None:
    print(f"queries: GET /api/v1/measurements, pages of {LIMIT}, {RUNS} runs each; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    bigstore.each_store(DB_URL, BACKENDS, "vwc-bench-queries-", bench)


if __name__ == "__main__":
    main()
