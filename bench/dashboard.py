"""Dashboard benchmark (`make bench`): how fast the matrix and the timelines
answer over many measurements, on SQLite and PostgreSQL.

The store is filled by bench/_bigstore.py: generated rows written straight
into the measurements table and rolled up by the ingest path's own hook
(`collector.dashboard.rollup.apply`, in the same transaction), without HTTP
or signature checks, which bench/ingest.py measures: each probe key signs
one record per endpoint and verdict once, and those signed texts are reused
for every row of that kind while the row's columns carry the generated time
and verdict. So the rows are realistic in shape and size for queries, not
evidence.

The generated data: 3 operators x 4 link types x 5 probes (60 keys), 8
services x (3 call + 2 messaging endpoints), two years of passes spread over
keys and days, 2% noise, and blocking episodes (calls on one operator's
cellular network for 300 days, calls on every link of another for 200 days,
a throttled stretch). Figures: p50/p95 of the matrix over two years, a
quarter and a month (in-process and over HTTP), of a cell's timeline and of a
service's timeline on one operator; the time to detect changes on every
series; and, as the baseline measured in the same run, the same quarter's
matrix computed the naive way (a GROUP BY over the measurements table).

`BENCH_DASHBOARD_RECORDS` (default 300,000; the documented target is
10,000,000), `BENCH_DASHBOARD_BACKENDS` (default `sqlite,postgresql`), or
`BENCH_DB_URL` to reuse a store filled once with `python bench/_bigstore.py
URL 10000000` (it is migrated first, as a collector would at start).
Target: p95 <= 200 ms for the matrix and a timeline at 10 million.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench import _bigstore as bigstore  # noqa: E402
from collector.dashboard.cells import DashboardReader, Period, Where  # noqa: E402
from collector.dashboard.changestore import ChangeStore  # noqa: E402
from collector.db.engine import make_engine  # noqa: E402
from collector.db.migrate import upgrade  # noqa: E402
from collector.db.schema import measurements  # noqa: E402
from collector.settings import default_workers  # noqa: E402
from probe.core.signing import ProbeKey  # noqa: E402

RECORDS = int(os.environ.get("BENCH_DASHBOARD_RECORDS", "300000"))
BACKENDS = os.environ.get("BENCH_DASHBOARD_BACKENDS", "sqlite,postgresql").split(",")
DB_URL = os.environ.get("BENCH_DB_URL")
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
TARGET_MS = 200
OPERATORS = ((6713, "Maroc Telecom"), (36925, "Orange Maroc"), (36884, "Inwi"))
LINKS = ("cellular", "wifi", "adsl", "ethernet")
SERVICES = ("whatsapp", "messenger", "signal", "telegram", "viber", "teams", "zoom", "facetime")
ENDPOINTS = (("stun", 3478, "udp", "call"), ("turn", 3478, "tcp", "call"),
             ("stun", 19302, "udp", "call"), ("tcp", 5222, "tcp", "messaging"),
             ("tls", 443, "tls", "messaging"))
DAYS = 730
FIRST = dt.date(2015, 1, 1)


def _blocked(asn: int, link: str, service: str, role: str, day: int) -> str:
    if role == "call" and asn == 6713 and link == "cellular" and 200 <= day < 500:
        return "blocked"
    if role == "call" and asn == 36884 and 400 <= day < 600 and service != "signal":
        return "blocked"
    if role == "call" and asn == 36925 and service == "zoom" and 100 <= day < 160:
        return "throttled"
    return "open"


class Generator:
    def __init__(self, seed: int = 15) -> None:
        self.rng = random.Random(seed)
        self.keys: list[tuple[ProbeKey, int, str, str]] = []
        for asn, org in OPERATORS:
            for link in LINKS:
                for _ in range(5):
                    self.keys.append((ProbeKey.generate(), asn, org, link))
        self.key_ids = [key.key_id for key, *_ in self.keys]  # a hash per call otherwise
        self.templates: dict[tuple[int, str, int, str], str] = {}

    def template(self, index: int, service: str, endpoint: int, verdict: str) -> str:
        """A signed record's text per key, endpoint and verdict, made once."""
        wanted = (index, service, endpoint, verdict)
        if wanted not in self.templates:
            import orjson

            key, asn, org, link = self.keys[index]
            check, port, transport, role = ENDPOINTS[endpoint]
            blocking = {"blocked": "stun.no_response" if check in ("stun", "turn") else
                        "tcp.reset", "throttled": "throttle.rate"}.get(verdict)
            record = key.sign({
                "schema": "voipwatch.measurement/1", "id": str(uuid.uuid4()),
                "started_at": "2015-01-01T00:00:00.000Z", "runtime_ms": 30,
                "probe": {"key_id": key.key_id, "software_version": "0.2.0",
                          "public_key": key.public_b64},
                "network": {"link_type": link, "cc": "MA", "asn": asn, "as_org": org,
                            "attribution": "control"},
                "service": service, "endpoint": {"check": check, "host": f"{check}.{service}.net",
                                                 "port": port, "transport": transport,
                                                 "role": role},
                "verdict": verdict, "blocking": blocking,
                "evidence": {"rule": "bench", "rtt_ms": [12.5, 13.1],
                             "control": {"state": "ok", "failure": None}}})
            self.templates[wanted] = orjson.dumps(record).decode()
        return self.templates[wanted]

    def rows(self, count: int) -> Any:
        """`count` rows in time order: passes spread over keys and days."""
        per_pass = len(SERVICES) * len(ENDPOINTS)
        passes = max(count // per_pass, 1)
        made = 0
        for n in range(passes):
            day = n * DAYS // passes
            index = self.rng.randrange(len(self.keys))
            _, asn, org, link = self.keys[index]
            key_id = self.key_ids[index]
            moment = dt.datetime.combine(FIRST + dt.timedelta(days=day), dt.time(),
                                         tzinfo=dt.UTC) + dt.timedelta(
                seconds=self.rng.randrange(86000))
            for service in SERVICES:
                for e, (check, port, transport, role) in enumerate(ENDPOINTS):
                    verdict = _blocked(asn, link, service, role, day)
                    if self.rng.random() < 0.02:
                        verdict = self.rng.choice(("open", "blocked", "inconclusive"))
                    yield {"id": str(uuid.uuid4()), "key_id": key_id, "service": service,
                           "check_name": check, "role": role, "transport": transport,
                           "endpoint_host": f"{check}.{service}.net", "endpoint_port": port,
                           "verdict": verdict,
                           "blocking": None if verdict in ("open", "inconclusive") else
                           ("throttle.rate" if verdict == "throttled" else "stun.no_response"),
                           "link_type": link, "cc": "MA", "asn": asn, "as_org": org,
                           "geoip_source": "bench", "geoip_date": None, "probe_ip": None,
                           "started_at": moment, "received_at": moment + dt.timedelta(
                               seconds=60),
                           "record": self.template(index, service, e, verdict)}
                    made += 1
                    if made >= count:
                        return


def timed(call: Callable[[], Any], runs: int = RUNS) -> tuple[float, float]:
    """(p50, p95) in ms."""
    call()  # warm
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1,
                                                   round(0.95 * (len(samples) - 1)))]


def timed_http(get: Callable[[], Any]) -> tuple[float, float]:
    """(p50, p95) in ms of a request to a collector in its default
    configuration: each API process answers once first (`timed` warms one)."""
    for _ in range(default_workers()):
        get()
    return timed(get)


def naive_matrix(engine: sa.Engine, period: Period) -> int:
    """The baseline: the same period's verdict counts per cell from the
    measurements table itself (what a dashboard without rollups must do)."""
    c = measurements.c
    start = dt.datetime.combine(period.start, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    query = (sa.select(c.service, c.role, c.cc, c.asn, c.link_type, c.key_id, c.verdict,
                       sa.func.count())
             .where(c.started_at >= start, c.started_at < end)
             .group_by(c.service, c.role, c.cc, c.asn, c.link_type, c.key_id, c.verdict))
    with engine.connect() as conn:
        return len(conn.execute(query).all())


def bench(backend: str, url: str, data_dir: Path, fill: bool = True) -> None:
    from tests.collector.harness import Collector

    engine = make_engine(url)
    start = time.perf_counter()
    upgrade(engine)
    if fill:
        print(f"  {backend}: loading {RECORDS:,} rows (rows + rollup hook) ...", flush=True)
        rate = bigstore.fill(engine, Generator(), RECORDS)
        print(f"    {rate:,.0f} rows/s loaded")
    else:
        print(f"  {backend}: {bigstore.stored(engine):,} rows stored; migrated in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    ChangeStore(engine).refresh()
    detect_s = time.perf_counter() - start
    reader = DashboardReader(engine)
    last = FIRST + dt.timedelta(days=DAYS - 1)
    periods = {"2 years": Period(FIRST, last),
               "quarter": Period(last - dt.timedelta(days=89), last),
               "month": Period(dt.date(2016, 6, 1), dt.date(2016, 6, 30))}
    cell = reader.series(Where(service="whatsapp", role="call", cc="MA", operator="AS6713",
                               link="cellular"))
    op = reader.series(Where(service="whatsapp", cc="MA", operator="AS6713"))
    rows: list[tuple[str, float, float]] = []
    for name, period in periods.items():
        rows.append((f"matrix, {name}", *timed(lambda p=period: reader.cells(p))))
    rows.append(("matrix, quarter, cc=MA", *timed(lambda: reader.cells(periods["quarter"],
                                                                      Where(cc="MA")))))
    rows.append(("timeline of a cell, 2 years",
                 *timed(lambda: reader.daily([s.id for s in cell], periods["2 years"]))))
    rows.append(("timeline service x operator, 2 years",
                 *timed(lambda: reader.daily([s.id for s in op], periods["2 years"]))))
    baseline = timed(lambda: naive_matrix(engine, periods["quarter"]), runs=3)
    print(f"    change detection over every series (after the load): {detect_s:.2f} s")
    _table(baseline, rows, "x naive")  # in-process first: the HTTP part starts a collector
    rows = []
    # the generated rows are not in the transparency log (bench/_bigstore.py): a
    # collector would append them all at start; the pages do not read the log
    env = {**os.environ, "VOIPWATCH_COLLECTOR_TRANSPARENCY_LOG": "false"}
    with Collector(data_dir, None if backend == "sqlite" and fill else url,
                   env=env, default_workers=True) as running, \
            httpx.Client(base_url=running.url, timeout=60) as client:
        for path, name in (("/?from=2015-01-01&to=2016-12-30", "HTTP GET / (matrix), 2 years"),
                           ("/?from=2016-10-02&to=2016-12-30", "HTTP GET / (matrix), quarter"),
                           ("/cell?service=whatsapp&role=call&cc=MA&operator=AS6713"
                            "&link=cellular&from=2015-01-01&to=2016-12-30",
                            "HTTP GET /cell (timeline), 2 years"),
                           ("/timeline?service=whatsapp&cc=MA&operator=AS6713"
                            "&from=2015-01-01&to=2016-12-30",
                            "HTTP GET /timeline (service x operator)")):
            def get(path: str = path) -> None:
                assert client.get(path).status_code == 200

            rows.append((name, *timed_http(get)))
    _table(baseline, rows, "x naive")
    engine.dispose()


def _table(baseline: tuple[float, float], rows: list[tuple[str, float, float]],
           ratio: str) -> None:
    print(f"    {'':44}{'p50 ms':>9}{'p95 ms':>9}{ratio:>9}")
    print(f"    {'baseline: naive GROUP BY, quarter':44}{baseline[0]:9.1f}{baseline[1]:9.1f}"
          f"{1:9.2f}")
    for name, p50, p95 in rows:
        mark = "ok" if p95 <= TARGET_MS else "OVER"
        print(f"    {name:44}{p50:9.1f}{p95:9.1f}{p95 / baseline[1]:9.3f}  "
              f"{mark} (p95 <= {TARGET_MS} ms)", flush=True)


def main() -> None:
    print(f"dashboard: {'the store at BENCH_DB_URL' if DB_URL else format(RECORDS, ',')} "
          f"measurements, {RUNS} runs per query; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    bigstore.each_store(DB_URL, BACKENDS, "vwc-bench-dash-", bench)


if __name__ == "__main__":
    main()
