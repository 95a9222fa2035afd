"""Ingest benchmark (`make bench`): signed records per second that the collector
accepts and stores, in batches of 500, on SQLite and on PostgreSQL, next to the
raw Ed25519 verification rate (PyNaCl, one core) measured in the same run.

Each figure is the best of RUNS rounds of RECORDS fresh records, sent by two
concurrent uploaders to `voipwatch-collector serve --workers 2` (and, for
comparison, one uploader to one worker). Target: >= 5,000 records/s with SQLite
on 2 cores. PostgreSQL here runs with fsync off (a throwaway test server), so
its figure is an upper bound; SQLite runs with full durability.

Each configuration runs twice, with the transparency log off and on (receipts
are signed either way): the log's cost is the ratio, target >= 0.90
(docs/evidence.md).
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from probe.core.auth import sign_request  # noqa: E402
from probe.core.canonical import canonical_bytes  # noqa: E402
from probe.core.record import rfc3339, utcnow  # noqa: E402
from probe.core.signing import ProbeKey  # noqa: E402

RECORDS = int(os.environ.get("BENCH_INGEST_RECORDS", "20000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BATCH = 500
TARGET = 5000


def realistic(key: ProbeKey, index: int) -> dict[str, Any]:
    """A TLS record shaped like the probe's (about 1.4 kB signed)."""
    record = {
        "schema": "voipwatch.measurement/1", "id": str(uuid.uuid4()),
        "started_at": rfc3339(utcnow()), "runtime_ms": 40 + index % 200,
        "probe": {"key_id": key.key_id, "software_version": "0.1.0",
                  "public_key": key.public_b64},
        "network": {"link_type": "cellular", "link_type_source": "auto"},
        "service": ("whatsapp", "skype", "viber", "messenger")[index % 4],
        "endpoint": {"check": "tls", "host": "web.whatsapp.com", "port": 443,
                     "transport": "tls", "role": "call", "sni": "web.whatsapp.com"},
        "verdict": "open", "blocking": None,
        "evidence": {"status": "ok", "failure": None, "suspected": None, "rule": "ok",
                     "check_version": "1", "bytes_sent": 517, "bytes_received": 4312,
                     "connect_ms": 12.345 + index, "handshake_ms": 45.678,
                     "tls_version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256",
                     "certificate": {"subject": "CN=*.whatsapp.net", "issuer": "DigiCert",
                                     "not_after": "2027-01-01T00:00:00Z", "sha256": "ab" * 32},
                     "control": {"state": "ok", "failure": None,
                                 "evidence": {"connect_ms": 5.5, "handshake_ms": 20.1}},
                     "connectivity": {"ok": True, "target": "collector.example.org:443"}},
    }
    return key.sign(record)


def raw_verify_rate(records: list[dict[str, Any]], keys: dict[str, ProbeKey]) -> float:
    from nacl.signing import VerifyKey

    prepared = [(VerifyKey(keys[r["probe"]["key_id"]].public_raw), canonical_bytes(r),
                 base64.b64decode(r["signature"]["value"])) for r in records]
    start = time.perf_counter()
    for verifier, data, signature in prepared:
        verifier.verify(data, signature)
    return len(prepared) / (time.perf_counter() - start)


def upload(url: str, bodies: list[bytes], errors: list[str], key: ProbeKey) -> None:
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY,
                                                     1)])
    with httpx.Client(base_url=url, timeout=120, transport=transport) as client:
        for body in bodies:
            # signed, as the probe's uploader does: checked before the body is parsed
            response = client.post("/api/v1/measurements", content=body, headers={
                "Content-Type": "application/json",
                **sign_request(key, "POST", "/api/v1/measurements", body)})
            results = response.json()["results"] if response.status_code == 200 else []
            if sum(r["status"] == "accepted" for r in results) != body.count(b'"schema"'):
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")


def one_round(url: str, keys: list[ProbeKey], uploaders: int) -> float:
    records = [realistic(keys[i % len(keys)], i) for i in range(RECORDS)]
    bodies = [orjson.dumps(records[i:i + BATCH]) for i in range(0, len(records), BATCH)]
    errors: list[str] = []
    threads = [threading.Thread(target=upload, args=(url, bodies[n::uploaders], errors,
                                                     keys[n % len(keys)]))
               for n in range(uploaders)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"ingest bench: not every record was accepted: {errors[0]}")
    return RECORDS / elapsed


LOG_TARGET = 0.90


def measure(name: str, db: tuple[str | None, str | None], keys: list[ProbeKey], workers: int,
            uploaders: int) -> tuple[float, float, float]:
    """Best rate with the transparency log off, best with it on, and the median of
    the on/off ratios of rounds run back to back: two collectors (fresh databases)
    run side by side and take turns, so both see the same load on a shared machine."""
    from contextlib import ExitStack

    from tests.collector.harness import Collector

    rates: dict[bool, list[float]] = {False: [], True: []}
    with ExitStack() as stack:
        running = {}
        for log, url in ((False, db[0]), (True, db[1])):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vwc-bench-"))
            args = ["--workers", str(workers)] + ([] if log else ["--no-transparency-log"])
            # a quota fit for the volume: the default (20,000 per key and day) is a
            # limit against abuse, not against a benchmark
            running[log] = stack.enter_context(Collector(Path(tmp), url, args, env={
                **os.environ, "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "100000000"}))
            with running[log].client() as client:
                for key in keys:
                    client.post("/api/v1/probes", json={"public_key": key.public_b64})
        for _ in range(RUNS):
            for log in (False, True):
                rates[log].append(one_round(running[log].url, keys, uploaders))
        for log, collector in running.items():
            stored = int(collector.cli("export", "--format", "jsonl", "--out", "-",
                                       check=True).stdout.count("\n"))
            if stored != RECORDS * RUNS:
                raise SystemExit(f"ingest bench ({name}, log {log}): {stored} stored, "
                                 f"{RECORDS * RUNS} sent")
    ratios = sorted(on / off for off, on in zip(rates[False], rates[True], strict=True))
    return max(rates[False]), max(rates[True]), ratios[len(ratios) // 2]


def main() -> None:
    from tests.support.postgres import PostgresServer, PostgresUnavailable

    keys = [ProbeKey.generate() for _ in range(4)]
    sample = [realistic(keys[i % 4], i) for i in range(5000)]
    verify = raw_verify_rate(sample, {k.key_id: k for k in keys})
    print(f"ingest: {RECORDS} signed records per round, batches of {BATCH}, best of {RUNS}; "
          f"{os.cpu_count()} cores")
    print(f"  raw Ed25519 verification (PyNaCl, 1 core): {verify:9.0f} records/s   1.00")
    rows: list[tuple[str, str | None, int, int]] = [("sqlite", None, 1, 1),
                                                   ("sqlite", None, 2, 2)]
    server = None
    try:
        server = PostgresServer().start()
        rows += [("postgresql", None, 1, 1), ("postgresql", None, 2, 2)]
    except PostgresUnavailable as exc:
        print(f"  postgresql: skipped ({exc})")
    try:
        for name, db, workers, uploaders in rows:
            label = f"{name}, {workers} worker{'s' if workers > 1 else ''}"
            dbs = (db, db)
            if name == "postgresql":
                assert server is not None
                dbs = (server.create_database("bench"), server.create_database("bench"))
            off, rate, ratio = measure(name, dbs, keys, workers, uploaders)
            mark = ""
            if name == "sqlite" and workers == 2:
                mark = f"  (target >= {TARGET}: {'met' if rate >= TARGET else 'MISSED'})"
            print(f"  accepted and stored, {label:<24} {rate:9.0f} records/s   "
                  f"{rate / verify:4.2f}{mark}")
            print(f"    transparency log off: {off:9.0f} records/s; on/off, median of "
                  f"{RUNS} rounds back to back: {ratio:4.2f} (target >= {LOG_TARGET:.2f}: "
                  f"{'met' if ratio >= LOG_TARGET else 'MISSED'})")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
