"""Ingest benchmark (`make bench`): signed records per second that the collector
accepts and stores through its HTTP API, as a ratio to one core's raw Ed25519
verification rate (PyNaCl) measured in the same run.

The collector runs with its *default* configuration (`voipwatch-collector
serve`, no flags; only the daily quota per key is raised, a limit against
abuse and not against a benchmark). Clients send as the probe's uploader
does: batches of BATCH records of one key, each request signed
(probe/core/auth.py), from UPLOADERS concurrent uploaders. Records come from
bench/generate.py (real signed records of several keys, operators, services).

For each backend (SQLite with full durability; PostgreSQL, a throwaway server
with fsync off, so an upper bound), each figure is the best of RUNS rounds of
RECORDS fresh records:
- at an empty store, with the transparency log on (the default) and off: the
  log's cost is the on/off ratio (median of rounds run back to back on two
  collectors side by side), target >= 0.90 (docs/evidence.md);
- after PRELOAD more records were stored (BENCH_INGEST_PRELOAD, e.g. 2000000):
  the rate at that size over the rate at empty, target >= 0.90 (flat).
Targets (issue 17): SQLite >= 1.0x one core's verification and >= 5,000/s;
PostgreSQL >= 1.5x.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

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
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", "500"))
UPLOADERS = int(os.environ.get("BENCH_INGEST_UPLOADERS", "4"))
PRELOAD = int(os.environ.get("BENCH_INGEST_PRELOAD", "100000"))
BACKENDS = os.environ.get("BENCH_INGEST_BACKENDS", "sqlite,postgresql").split(",")
KEYS = 8
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


class Source:
    """Fresh records, one block after the other (never the same record twice)."""

    def __init__(self) -> None:
        self.next = 0
        self.keys = probe_keys(KEYS)

    def take(self, count: int, days: float = 1.0) -> list[tuple[ProbeKey, bytes]]:
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


def measure(name: str, urls: tuple[str | None, str | None], source: Source, verify: float
            ) -> None:
    from tests.collector.harness import Collector

    rates: dict[bool, list[float]] = {False: [], True: []}
    with ExitStack() as stack:
        running = {}
        for log, url in ((False, urls[0]), (True, urls[1])):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vwc-bench-"))
            args = [] if log else ["--no-transparency-log"]
            running[log] = stack.enter_context(Collector(Path(tmp), url, args, env={
                **os.environ, "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "1000000000"},
                default_workers=True))
            with running[log].client() as client:
                for key in source.keys:
                    client.post("/api/v1/probes", json={"public_key": key.public_b64})
        for _ in range(RUNS):
            for log in (False, True):
                rates[log].append(send(running[log].url, source.take(RECORDS)))
        ratios = sorted(on / off for off, on in zip(rates[False], rates[True], strict=True))
        empty = max(rates[True])
        collector = running[True]
        running[False].stop()
        start = time.perf_counter()
        loaded = 0
        while loaded < PRELOAD:  # a year of records, in blocks (constant memory)
            block = min(200_000, PRELOAD - loaded)
            send(collector.url, source.take(block, days=365.0))
            loaded += block
        load_rate = PRELOAD / (time.perf_counter() - start) if PRELOAD else 0.0
        large = max(send(collector.url, source.take(RECORDS)) for _ in range(RUNS))
        stored = RECORDS * RUNS * 2 + PRELOAD
        size, parts = _database_bytes(collector, tmp)
    target = RATIO_TARGETS[name]
    mark = f"target >= {target:.1f}x: {'met' if empty / verify >= target else 'MISSED'}"
    if name == "sqlite":
        mark += f"; >= {TARGET}/s: {'met' if empty >= TARGET else 'MISSED'}"
    print(f"  {name}, default configuration, empty store: {empty:9.0f} records/s   "
          f"{empty / verify:4.2f}x  ({mark})")
    ratio = ratios[len(ratios) // 2]
    print(f"    transparency log off: {max(rates[False]):9.0f} records/s; on/off, median of "
          f"{RUNS} rounds back to back: {ratio:4.2f} "
          f"(target >= {LOG_TARGET:.2f}: {'met' if ratio >= LOG_TARGET else 'MISSED'})")
    flat = large / empty
    print(f"    after {PRELOAD + RECORDS * RUNS:,} records stored (loaded at {load_rate:,.0f}/s): "
          f"{large:9.0f} records/s   {large / verify:4.2f}x; vs empty {flat:4.2f} "
          f"(target >= {FLAT_TARGET:.2f}: {'met' if flat >= FLAT_TARGET else 'MISSED'})")
    if size:
        print(f"    disk: {size / 2**20:,.0f} MiB for {stored:,} records: "
              f"{size / stored * 1e6 / 2**30:.2f} GiB per million; largest: " + ", ".join(
                  f"{name} {part / stored:,.0f} B" for name, part in parts) + " per record")


def _database_bytes(collector: object, data_dir: str) -> tuple[int, list[tuple[str, int]]]:
    """The database's size on disk, and the largest tables and indexes. SQLite:
    the database file; its WAL is kept at about WAL_LIMIT_BYTES whatever the
    number of records (collector/db/checkpoint.py), so it is not counted per record."""
    db = getattr(collector, "db", None)
    if db is None:
        import sqlite3

        path = Path(data_dir) / "collector.sqlite3"
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
    verify = raw_verify_rate([text for _, body in source.take(5000)
                              for text in _elements(body)])
    print(f"ingest: {RECORDS} signed records per round, batches of {BATCH}, {UPLOADERS} "
          f"uploaders, best of {RUNS}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    print(f"  raw Ed25519 verification (PyNaCl, 1 core): {verify:9.0f} records/s   1.00x")
    print(f"  collector: default configuration ({default_workers()} API workers here)")
    server = None
    try:
        for name in BACKENDS:
            urls: tuple[str | None, str | None] = (None, None)
            if name == "postgresql":
                try:
                    server = PostgresServer().start()
                except PostgresUnavailable as exc:
                    print(f"  postgresql: skipped ({exc})")
                    continue
                urls = (server.create_database("bench"), server.create_database("bench"))
            measure(name, urls, source, verify)
    finally:
        if server is not None:
            server.stop()
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")


def _elements(body: bytes) -> list[bytes]:
    return [orjson.dumps(value) for value in orjson.loads(body)]


if __name__ == "__main__":
    main()
