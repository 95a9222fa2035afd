"""Ingest benchmark (`make bench`): signed records per second that the collector
accepts and stores through its HTTP API, as a ratio to one core's raw Ed25519
verification rate (PyNaCl) measured in the same run.

The collector runs with its *default* configuration (`voipwatch-collector
serve`, no flags; only the daily quota per key is raised, a limit against
abuse and not against a benchmark). Clients send as the probe's uploader
does: batches of BATCH records of one key, each request signed
(probe/core/auth.py), from UPLOADERS concurrent uploaders, records measured in
the last FRESH_SECONDS (BENCH_INGEST_FRESH_SECONDS, 60: each pass's records are
uploaded once it ends; 86400: a day's spool from every probe at once). Records
come from bench/generate.py (real signed records of several keys, operators,
services); the preload's are spread over a year.

For each backend (SQLite with full durability; PostgreSQL, a throwaway server
with fsync off, so an upper bound), three collectors run side by side and
each round sends RECORDS fresh records to each in turn; rates are the best of
RUNS rounds, ratios the median of the rounds' ratios (a change in the
machine's load during the run touches both sides of a ratio alike):
- at an empty store (a fresh collector each round, warmed by WARM records),
  with the transparency log on (the default) and off: the log's cost is the
  on/off ratio, target >= 0.90 (docs/evidence.md);
- after PRELOAD records were stored first (BENCH_INGEST_PRELOAD, e.g.
  2000000; 0 leaves the third collector out), or on a store filled by
  bench/_bigstore.py (BENCH_INGEST_GROWN_DB, its URL: 10 million rows in
  minutes, where uploads take hours; the bench first enters its records in
  the transparency log, as a collector does at start): its rate over the
  empty store's, target >= 0.90 (flat).
Targets (issue 17): SQLite >= 1.0x one core's verification and >= 5,000/s;
PostgreSQL >= 1.5x. Also printed: the ceiling of cryptography alone, every
core doing nothing but check each record's signature and sign its receipt
(the contract's per-record receipt), as the same ratio (docs/scale.md).
"""

from __future__ import annotations

import base64
import functools
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench.generate import bodies, key_index, probe_keys  # noqa: E402
from collector.settings import default_workers  # noqa: E402
from probe.core.auth import sign_request  # noqa: E402
from probe.core.canonical import canonical_bytes  # noqa: E402
from probe.core.signing import ProbeKey  # noqa: E402

RECORDS = int(os.environ.get("BENCH_INGEST_RECORDS", "20000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", "500"))
UPLOADERS = int(os.environ.get("BENCH_INGEST_UPLOADERS", "4"))
PRELOAD = int(os.environ.get("BENCH_INGEST_PRELOAD", "100000"))
GROWN_DB = os.environ.get("BENCH_INGEST_GROWN_DB")
BACKENDS = os.environ.get("BENCH_INGEST_BACKENDS", "sqlite,postgresql").split(",")
KEYS = 8
SETTLE = 2.0  # seconds between rounds
# how old the records of a round are: a probe uploads each pass's records once it
# ends, so what reaches a collector was measured in the last minute or so, after
# what it holds; 86400 models every probe sending a day's spool at once
FRESH_SECONDS = float(os.environ.get("BENCH_INGEST_FRESH_SECONDS", "60"))
WARM = 4000  # records each fresh collector takes before its round (every API process)
TARGET, LOG_TARGET, FLAT_TARGET = 5000, 0.90, 0.90
RATIO_TARGETS = {"sqlite": 1.0, "postgresql": 1.5}
PATH = "/api/v1/measurements"


def raw_verify_rate(texts: list[bytes]) -> float:
    """Records per second one core verifies (PyNaCl), canonical bytes ready."""
    from nacl.signing import VerifyKey

    prepared = []
    for text in texts:
        record = orjson.loads(text)
        prepared.append((VerifyKey(base64.b64decode(record["probe"]["public_key"])),
                         canonical_bytes(record), base64.b64decode(record["signature"]["value"])))
    start = time.perf_counter()
    for verifier, data, signature in prepared:
        verifier.verify(data, signature)
    return len(prepared) / (time.perf_counter() - start)


def receipt_sign_rate(texts: list[bytes]) -> float:
    """Receipts per second one core makes (collector/receipts.py: one per
    accepted record, its JCS signed with PyNaCl)."""
    import hashlib
    from datetime import UTC, datetime

    from nacl.signing import SigningKey

    from collector.identity import CollectorKey
    from collector.receipts import receipt
    from collector.store import Stored

    key = CollectorKey(SigningKey.generate())
    now = datetime.now(UTC)
    stored = [(orjson.loads(text)["id"], Stored(True, n, hashlib.sha256(text).hexdigest(), now))
              for n, text in enumerate(texts)]
    start = time.perf_counter()
    for record_id, where in stored:
        receipt(key, record_id, where)
    return len(stored) / (time.perf_counter() - start)


def crypto_ceiling(verify: float, sign: float, cores: int) -> float:
    """Records per second that `cores` cores would ingest if checking a record's
    signature and signing its receipt were all the work there is."""
    return cores / (1 / verify + 1 / sign)


class Source:
    """Fresh records, one block after the other (never the same record twice)."""

    def __init__(self) -> None:
        self.next = 0
        self.keys = probe_keys(KEYS)

    def take(self, count: int, days: float = FRESH_SECONDS / 86400
             ) -> list[tuple[ProbeKey, bytes]]:
        first = self.next
        self.next += -(-count // 1000) * 1000  # blocks of 1,000: one key per batch
        out = []
        for n, body in enumerate(bodies(count, BATCH, keys=KEYS, first=first, days=days)):
            out.append((self.keys[key_index(first + n * BATCH, KEYS)], body))
        return out


def upload(url: str, batches: list[tuple[ProbeKey, bytes]], errors: list[str]) -> None:
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY,
                                                     1)])
    with httpx.Client(base_url=url, timeout=300, transport=transport) as client:
        for key, body in batches:
            # signed as the probe's uploader signs (probe/upload/uploader.py)
            response = client.post(PATH, content=body, headers={
                "Content-Type": "application/json", **sign_request(key, "POST", PATH, body)})
            results = response.json()["results"] if response.status_code == 200 else []
            if sum(r["status"] == "accepted" for r in results) != body.count(b'"schema"'):
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")


def send(url: str, batches: list[tuple[ProbeKey, bytes]], uploaders: int = UPLOADERS
         ) -> float:
    """Records per second accepted, `uploaders` clients at once."""
    errors: list[str] = []
    threads = [threading.Thread(target=upload, args=(url, batches[n::uploaders], errors))
               for n in range(uploaders)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"ingest bench: not every record was accepted: {errors[0]}")
    return sum(body.count(b'"schema"') for _, body in batches) / elapsed


def measure(name: str, new_url: Callable[[], str | None], source: Source, verify: float,
            ceiling: float) -> None:
    """Rounds of RECORDS records to three collectors in turn (in an order that
    rotates), so that a change in the machine's load touches each side of a
    ratio alike: the log off and the log on, each a fresh collector every round
    (an empty store, warmed by WARM records), and one grown by PRELOAD records
    first, then by each round. `new_url()`: a fresh database (None: SQLite)."""
    grown_db = GROWN_DB if GROWN_DB and _backend(GROWN_DB) == name else None
    preload = _stored(grown_db) if grown_db else PRELOAD
    kinds = ("off", "empty", "grown") if preload else ("off", "empty")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    with ExitStack() as stack:
        grown = None
        load_rate = 0.0
        if grown_db:
            _enter_in_log(grown_db, name)
            grown = _collector(stack, grown_db, [], source)
        elif PRELOAD:
            grown = _collector(stack, new_url(), [], source)
            start = time.perf_counter()
            loaded = 0
            while loaded < PRELOAD:  # a year of records, in blocks (constant memory)
                block = min(200_000, PRELOAD - loaded)
                send(grown.url, source.take(block, days=365.0))
                loaded += block
                print(f"    {name}: {loaded:,} of {PRELOAD:,} records preloaded", flush=True)
            load_rate = PRELOAD / (time.perf_counter() - start)
        for round_ in range(RUNS):
            with ExitStack() as fresh:
                running = {kind: _collector(fresh, new_url(), args, source) for kind, args in
                           (("off", ["--no-transparency-log"]), ("empty", []))}
                if grown is not None:
                    running["grown"] = grown
                for n in range(len(kinds)):
                    kind = kinds[(round_ + n) % len(kinds)]
                    batches = source.take(RECORDS)
                    # what a round leaves to do in the background (the WAL's checkpoint,
                    # each second) is done before the next round, on another collector
                    time.sleep(SETTLE)
                    rates[kind].append(send(running[kind].url, batches))
            print(f"    {name}: round {round_ + 1} of {RUNS}: " + ", ".join(
                f"{kind} {rates[kind][-1]:,.0f}/s" for kind in kinds), flush=True)
        size, parts = _database_bytes(grown) if grown is not None else (0, [])
    stored = WARM + preload + RECORDS * RUNS  # in the grown store
    empty = max(rates["empty"])
    target = RATIO_TARGETS[name]
    mark = f"target >= {target:.1f}x: {'met' if empty / verify >= target else 'MISSED'}"
    if target * verify > ceiling:
        mark += ", above cryptography alone"
    if name == "sqlite":
        mark += f"; >= {TARGET}/s: {'met' if empty >= TARGET else 'MISSED'}"
    print(f"  {name}, default configuration, empty store: {empty:9.0f} records/s   "
          f"{empty / verify:4.2f}x  ({mark})")
    ratio = _median_ratio(rates["empty"], rates["off"])
    print(f"    transparency log off: {max(rates['off']):9.0f} records/s; on/off, median of "
          f"{RUNS} rounds side by side: {ratio:4.2f} "
          f"(target >= {LOG_TARGET:.2f}: {'met' if ratio >= LOG_TARGET else 'MISSED'})")
    if preload:
        large = max(rates["grown"])
        flat = _median_ratio(rates["grown"], rates["empty"])
        how = f"loaded at {load_rate:,.0f}/s" if load_rate else "by bench/_bigstore.py"
        print(f"    after {preload:,} records stored ({how}): "
              f"{large:9.0f} records/s   {large / verify:4.2f}x; vs empty, median of {RUNS} "
              f"rounds side by side: {flat:4.2f} "
              f"(target >= {FLAT_TARGET:.2f}: {'met' if flat >= FLAT_TARGET else 'MISSED'})")
    if size:
        print(f"    disk: {size / 2**20:,.0f} MiB for {stored:,} records: "
              f"{size / stored * 1e6 / 2**30:.2f} GiB per million; largest: " + ", ".join(
                  f"{name} {part / stored:,.0f} B" for name, part in parts) + " per record")


def _collector(stack: ExitStack, url: str | None, args: list[str], source: Source) -> Any:
    """A collector with the default configuration, the bench's keys registered, each
    API process warmed by a few batches; stopped (its files removed) with `stack`."""
    from tests.collector.harness import Collector

    data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="vwc-bench-"))
    collector = stack.enter_context(Collector(Path(data_dir), url, args, env={
        **os.environ, "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "1000000000"},
        default_workers=True))
    with collector.client() as client:
        for key in source.keys:
            client.post("/api/v1/probes", json={"public_key": key.public_b64})
    send(collector.url, source.take(WARM))
    return collector


def _backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def _stored(url: str) -> int:
    from bench._bigstore import stored
    from collector.db.engine import make_engine

    return stored(make_engine(url))


def _enter_in_log(url: str, name: str) -> None:
    """The store's records not in the transparency log yet, entered as the collector
    does at start (collector/translog.py), with progress: at 10 million records
    minutes, more than a collector's start is given in the bench."""
    from nacl.signing import SigningKey

    from collector.db.engine import make_engine
    from collector.identity import CollectorKey
    from collector.translog import CATCH_UP_CHUNK, TransLog

    log = TransLog(make_engine(url), CollectorKey(SigningKey.generate()))
    start = time.perf_counter()

    def report(count: int) -> None:  # told after each chunk: a line every million
        if count % 1_000_000 < CATCH_UP_CHUNK:
            print(f"    {name}: {count:,} stored records entered in the log", flush=True)

    done = log.catch_up(progress=report)
    if done:
        print(f"    {name}: {done:,} records entered in the log at "
              f"{done / (time.perf_counter() - start):,.0f}/s", flush=True)


def _median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the ratios round by round (rounds run side by side)."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True))
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def _database_bytes(collector: Any) -> tuple[int, list[tuple[str, int]]]:
    """The database's size on disk, and the largest tables and indexes. SQLite:
    the database file; its WAL is cut back to WAL_LIMIT_BYTES whatever the
    number of records (collector/db/checkpoint.py), so it is not counted per record."""
    db = getattr(collector, "db", None)
    if db is None or _backend(db) == "sqlite":
        import sqlite3

        path = (Path(collector.data_dir) / "collector.sqlite3" if db is None else
                Path(db.split("///", 1)[1]))
        with sqlite3.connect(path) as conn:
            # pages still in the WAL counted too
            total = conn.execute("SELECT page_count * page_size FROM pragma_page_count(), "
                                 "pragma_page_size()").fetchone()[0]
            parts = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name "
                                 "ORDER BY 2 DESC LIMIT 6").fetchall()
        return total, [(str(n), int(b)) for n, b in parts]
    import psycopg

    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        parts = conn.execute("SELECT relname, pg_relation_size(oid) FROM pg_class "
                             "WHERE relkind IN ('r', 'i', 't') ORDER BY 2 DESC LIMIT 6"
                             ).fetchall()
    return (int(row[0]) if row else 0), [(str(n), int(b)) for n, b in parts]


def main() -> None:
    from tests.support.postgres import PostgresServer, PostgresUnavailable

    source = Source()
    texts = [text for _, body in source.take(5000) for text in _elements(body)]
    verify = raw_verify_rate(texts)
    print(f"ingest: {RECORDS} signed records per round, measured in the last "
          f"{FRESH_SECONDS:g} s, batches of {BATCH}, {UPLOADERS} "
          f"uploaders, best of {RUNS}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    print(f"  raw Ed25519 verification (PyNaCl, 1 core): {verify:9.0f} records/s   1.00x")
    cores = os.cpu_count() or 1
    sign = receipt_sign_rate(texts[:2000])
    ceiling = crypto_ceiling(verify, sign, cores)
    print(f"  cryptography alone, on {cores} cores (a verification and a receipt made per "
          f"record, {sign:,.0f} receipts/s on 1 core): {ceiling:9.0f} records/s   "
          f"{ceiling / verify:4.2f}x (the ceiling of any ingest that signs a receipt per "
          "record)")
    print(f"  collector: default configuration ({default_workers()} API workers here)")
    server = None
    try:
        for name in BACKENDS:
            new_url: Callable[[], str | None] = _sqlite
            if name == "postgresql":
                try:
                    server = PostgresServer().start()
                except PostgresUnavailable as exc:
                    print(f"  postgresql: skipped ({exc})")
                    continue
                new_url = functools.partial(server.create_database, "bench")
            measure(name, new_url, source, verify, ceiling)
    finally:
        if server is not None:
            server.stop()
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")


def _sqlite() -> None:
    """SQLite: each collector makes its own database in its data directory."""
    return None


def _elements(body: bytes) -> list[bytes]:
    return [orjson.dumps(value) for value in orjson.loads(body)]


if __name__ == "__main__":
    main()
