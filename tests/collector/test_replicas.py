"""Past one machine (issue 17): two API replicas (two `voipwatch-collector
serve` processes, each with its own data directory holding the same collector
key) on one shared PostgreSQL, used through a round-robin client as a load
balancer would. Uploads to both: every record stored once, receipts valid,
one transparency log; per-key quotas and per-address registration limits hold
across replicas, since their counters live in the database (collector/limits.py).
docs/scale.md describes the deployment."""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from collector.db.engine import make_engine
from collector.db.schema import dash_endpoint_day, log_state, measurements
from probe.core import merkle
from probe.core.evidence import head_hashes, hexes, leaf_bytes, record_sha256, verify_object
from probe.core.signing import ProbeKey
from tests.collector.conftest import UploadSigner, make_record
from tests.collector.harness import Collector
from tests.support.postgres import PostgresServer

PATH = "/api/v1/measurements"


class RoundRobin:
    """Each request to the next replica, as a load balancer spreads them."""

    def __init__(self, replicas: list[Collector]) -> None:
        self.clients = [r.client() for r in replicas]
        self._next = itertools.cycle(range(len(self.clients)))

    def pick(self) -> httpx.Client:
        return self.clients[next(self._next)]

    def close(self) -> None:
        for client in self.clients:
            client.close()


def start_replicas(tmp_path: Path, db: str, env: dict[str, str], count: int = 2
                   ) -> list[Collector]:
    """`count` replicas on one database: the first makes the collector key and
    migrates the schema, the others start with a copy of that key (the operator
    deploys one key to every replica, like a TLS certificate)."""
    first = Collector(tmp_path / "r0", db, ["--forwarded-allow-ips", "127.0.0.1"],
                      env=env).start()
    replicas = [first]
    try:
        for n in range(1, count):
            data = tmp_path / f"r{n}"
            data.mkdir(mode=0o700)
            shutil.copy2(first.data_dir / "collector.key", data / "collector.key")
            replicas.append(Collector(data, db, ["--forwarded-allow-ips", "127.0.0.1"],
                                      env=env).start())
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


@pytest.fixture
def replicas(postgres: PostgresServer, tmp_path: Path) -> Iterator[list[Collector]]:
    env = {**os.environ, "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "1000",
           "VOIPWATCH_COLLECTOR_REGISTER_RATE_PER_HOUR": "3"}
    running = start_replicas(tmp_path, postgres.create_database("replicas"), env)
    try:
        yield running
    finally:
        for replica in running:
            replica.stop()


def upload(client: httpx.Client, key: ProbeKey, records: list[dict[str, Any]]
           ) -> httpx.Response:
    return client.post(PATH, content=orjson.dumps(records), auth=UploadSigner(key),
                       headers={"Content-Type": "application/json"})


def test_uploads_to_both_replicas_make_one_store_and_one_log(
        replicas: list[Collector]) -> None:
    balancer = RoundRobin(replicas)
    try:
        public = [c.get("/api/v1/collector").json() for c in balancer.clients]
        assert public[0] == public[1]  # one collector key
        raw = base64.b64decode(public[0]["public_key"])
        keys = [ProbeKey.generate() for _ in range(4)]
        for n, key in enumerate(keys):  # from 4 addresses (3 new keys per address an hour)
            assert balancer.pick().post("/api/v1/probes", json={"public_key": key.public_b64},
                                        headers={"X-Forwarded-For": f"192.0.2.{n + 1}"}
                                        ).status_code == 201
        batches = [(key, [make_record(key, "replicas") for _ in range(50)])
                   for key in keys for _ in range(3)]
        # every batch sent twice at once, through different replicas: a retry
        # after a timeout, landing elsewhere
        jobs = [(balancer.clients[n % 2], key, records) for n, (key, records)
                in enumerate(batches)]
        jobs += [(balancer.clients[(n + 1) % 2], key, records) for n, (key, records)
                 in enumerate(batches)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda job: upload(*job), jobs))
        assert all(r.status_code == 200 for r in responses), responses[0].text
        receipts: dict[str, dict[str, Any]] = {}
        statuses: dict[str, list[str]] = {}
        for response, (_, _, records) in zip(responses, jobs, strict=True):
            for record, result in zip(records, response.json()["results"], strict=True):
                statuses.setdefault(record["id"], []).append(result["status"])
                receipt = result["receipt"]
                verify_object(receipt, raw, "receipt")
                assert receipt["record_sha256"] == record_sha256(record)
                # both answers for one record name the same log entry
                assert receipts.setdefault(record["id"], receipt)["log_index"] == \
                    receipt["log_index"]
        total = sum(len(records) for _, records in batches)
        assert len(statuses) == total
        assert all(sorted(s) == ["accepted", "duplicate"] for s in statuses.values())
        indexes = sorted(r["log_index"] for r in receipts.values())
        assert indexes == list(range(total))  # one log: no gap, no index given twice

        # both replicas serve the same log, and each proves the other's appends
        heads = [c.get("/api/v1/log/head").json() for c in balancer.clients]
        for head in heads:
            verify_object(head, raw, "tree head")
        (size_a, root_a), (size_b, root_b) = (head_hashes(h) for h in heads)
        assert size_a == size_b == total and root_a == root_b
        for client in balancer.clients:
            for index in (0, total // 2, total - 1):
                proof = client.get("/api/v1/log/inclusion",
                                   params={"index": index, "tree_size": total}).json()
                assert merkle.verify_inclusion(index, total,
                                               merkle.leaf_hash(leaf_bytes(proof["leaf"])),
                                               hexes(proof["audit_path"]), root_a)
        # more records through one replica; the other proves the log only grew
        more = [make_record(keys[0], "replicas") for _ in range(10)]
        assert upload(balancer.clients[0], keys[0], more).status_code == 200
        head = balancer.clients[1].get("/api/v1/log/head").json()
        size_c, root_c = head_hashes(head)
        assert size_c == total + 10
        proof = balancer.clients[1].get("/api/v1/log/consistency",
                                        params={"first": total, "second": size_c}).json()
        assert merkle.verify_consistency(total, size_c, root_a, root_c,
                                         hexes(proof["consistency_path"]))
        # stored once: the export holds each record once
        exported = replicas[1].cli("export", "--format", "jsonl", "--out", "-", check=True)
        ids = [orjson.loads(line)["measurement"]["id"]
               for line in exported.stdout.splitlines()]
        assert len(ids) == len(set(ids)) == total + 10
    finally:
        balancer.close()


def test_quotas_and_rate_limits_are_shared_by_the_replicas(
        replicas: list[Collector]) -> None:
    balancer = RoundRobin(replicas)
    a, b = balancer.clients
    try:
        # registrations per address (3 an hour): two through one replica, one
        # through the other, and the fourth is refused by whichever gets it
        def new_key(client: httpx.Client) -> int:
            return client.post("/api/v1/probes",
                               json={"public_key": ProbeKey.generate().public_b64},
                               headers={"X-Forwarded-For": "198.51.100.9"}).status_code

        assert [new_key(a), new_key(a), new_key(b)] == [201, 201, 201]
        assert new_key(a) == 429 and new_key(b) == 429
        # records per key per day (1,000): 600 through each replica is too many
        key = ProbeKey.generate()
        assert a.post("/api/v1/probes", json={"public_key": key.public_b64},
                      headers={"X-Forwarded-For": "192.0.2.77"}).status_code == 201
        first = upload(a, key, [make_record(key, "quota") for _ in range(600)])
        assert first.status_code == 200
        over = upload(b, key, [make_record(key, "quota") for _ in range(600)])
        assert (over.status_code, over.json()["error"]) == (429, "quota_exceeded")
        fits = upload(b, key, [make_record(key, "quota") for _ in range(400)])
        assert fits.status_code == 200
        assert upload(a, key, [make_record(key, "quota")]).status_code == 429
    finally:
        balancer.close()


def test_an_upload_waits_for_the_log_last_and_a_race_stores_once(
        replicas: list[Collector]) -> None:
    """PostgreSQL takes the uploads one at a time on the transparency log's lock,
    held to each commit; an upload takes it last, after its rollups, so that
    they are done while another upload holds it. With the log held, the same
    batch sent through both replicas: the first to come has rolled up before it
    waits; then one answer is all accepted, the other all duplicates naming the
    same log entries, each record stored and counted in the rollups once."""
    a, b = (replica.client() for replica in replicas)
    engine = make_engine(str(replicas[0].db))
    try:
        key = ProbeKey.generate()
        assert a.post("/api/v1/probes", json={"public_key": key.public_b64},
                      headers={"X-Forwarded-For": "192.0.2.80"}).status_code == 201
        batch = [make_record(key, "race", verdict="blocked" if n % 3 else "open",
                             blocking="tcp.reset" if n % 3 else None,
                             endpoint={"check": "tcp", "host": "203.0.113.7", "port": 1000 + n,
                                       "transport": "tcp", "role": "call"})
                 for n in range(200)]
        with engine.connect() as holder:
            holder.begin()
            holder.execute(sa.select(log_state).with_for_update()).all()
            holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with ThreadPoolExecutor(2) as pool:
                sent = [pool.submit(upload, client, key, batch) for client in (a, b)]
                with engine.connect() as watch:
                    waiting: list[int] = []
                    for _ in range(300):  # both uploads wait: one for the log, one for it
                        waiting = watch.execute(sa.text(
                            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database()")).scalars().all()
                        if len(waiting) == 2:
                            break
                        time.sleep(0.1)
                    assert len(waiting) == 2, waiting
                    first = watch.execute(sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE :holder = ANY("
                        "pg_blocking_pids(pid))"), {"holder": holder_pid}).scalars().all()
                    assert len(first) == 1, first
                    # what the upload waiting for the log has already written
                    written = set(watch.execute(sa.text(
                        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE l.pid = :pid AND l.granted AND l.mode = 'RowExclusiveLock'"),
                        {"pid": first[0]}).scalars())
                    assert {"dash_endpoint_day", "dash_unit", "probes"} <= written, written
                    assert "measurements" not in written
                holder.rollback()
                answers = [future.result() for future in sent]
        assert [r.status_code for r in answers] == [200, 200], answers[0].text
        statuses = sorted(sorted({result["status"] for result in r.json()["results"]})
                          for r in answers)
        assert statuses == [["accepted"], ["duplicate"]]
        entries = [[result["receipt"]["log_index"] for result in r.json()["results"]]
                   for r in answers]
        assert entries[0] == entries[1]
        with engine.connect() as conn:
            stored = conn.execute(sa.select(measurements.c.log_index)
                                  .where(measurements.c.key_id == key.key_id)).scalars().all()
            assert sorted(stored) == sorted(entries[0])
            assert len(set(stored)) == len(batch)
            tree_size = conn.execute(sa.select(log_state.c.tree_size)).scalar_one()
            assert sorted(conn.execute(sa.select(measurements.c.log_index)).scalars()) == \
                list(range(tree_size))
            e = dash_endpoint_day.c
            counted = conn.execute(sa.select(sa.func.sum(e.n_open + e.n_blocked))
                                   .where(e.key_id == key.key_id)).scalar_one()
        assert counted == len(batch)
    finally:
        a.close()
        b.close()
        engine.dispose()
