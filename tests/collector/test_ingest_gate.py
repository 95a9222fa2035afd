"""Cost before authentication (issue 13): signatures checked on the raw body
before any JSON is decoded, small body limits everywhere but signed ingest,
unsigned ingest kept working under tight limits, a per-record size cap, a
per-key quota, and rejections counted without taking the write lock."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from tests.collector.conftest import (
    BACKENDS,
    UploadSigner,
    database_url,
    make_record,
    register,
    unique_service,
)
from tests.collector.harness import Collector

INGEST = "/api/v1/measurements"


def signed(key: ProbeKey, path: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", **sign_request(key, "POST", path, body)}


def test_unsigned_ingest_is_held_to_a_small_body(http: httpx.Client) -> None:
    anonymous = b"[" + b",".join([b"1234567"] * 1_000_000) + b"]"  # 8 MB of numbers
    start = time.monotonic()
    response = httpx.post(str(http.base_url) + INGEST, content=anonymous, timeout=60)
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")
    assert time.monotonic() - start < 5
    # an old client's small unsigned batch still goes in
    key = ProbeKey.generate()
    register(http, key)
    record = make_record(key, unique_service())
    plain = httpx.post(str(http.base_url) + INGEST, json=[record], timeout=30)
    assert plain.json()["results"][0]["status"] == "accepted"


def test_signature_checked_before_the_body_is_parsed(http: httpx.Client,
                                                     collector: Collector) -> None:
    stranger = ProbeKey.generate()
    garbage = b"[" * 50_000 + b"not json"
    http = httpx.Client(base_url=http.base_url, timeout=30)  # signs nothing by itself
    for path in (INGEST, "/api/v1/control"):
        response = http.post(path, content=garbage, headers=signed(stranger, path, garbage))
        assert (response.status_code, response.json()["error"]) == (401, "unknown_key"), path
    unsigned = httpx.post(str(http.base_url) + "/api/v1/control", content=garbage)
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unsigned_request")
    key = ProbeKey.generate()
    register(http, key)
    tampered = http.post(INGEST, content=b"[]", headers=signed(key, INGEST, b"[ ]"))
    assert (tampered.status_code, tampered.json()["error"]) == (401, "bad_signature")
    collector.cli("probes", "revoke", key.key_id, check=True)
    revoked = http.post(INGEST, content=garbage, headers=signed(key, INGEST, garbage))
    assert (revoked.status_code, revoked.json()["error"]) == (403, "revoked_key")


def test_small_body_limits_on_other_routes(http: httpx.Client) -> None:
    big = json.dumps({"public_key": "A" * 400_000}).encode()
    response = http.post("/api/v1/probes", content=big,
                         headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")


def test_record_size_cap_counts_evidence(http: httpx.Client) -> None:
    key = ProbeKey.generate()
    register(http, key)
    fat = make_record(key, unique_service(), evidence={"blob": "x" * 100_000})
    thin = make_record(key, unique_service())
    results = http.post(INGEST, json=[fat, thin]).json()["results"]
    assert [(r["status"], r["reason"]) for r in results] == [("rejected", "too_large"),
                                                             ("accepted", None)]


def start(tmp_path: Path, **env: str) -> Collector:
    return Collector(tmp_path / "c", None, env={
        **os.environ, **{f"VOIPWATCH_COLLECTOR_{k.upper()}": v for k, v in env.items()}}
    ).start()


def test_per_key_quota(tmp_path: Path) -> None:
    with start(tmp_path, ingest_quota_per_day="5") as collector, collector.client() as http:
        key = ProbeKey.generate()
        register(http, key)
        http.auth = UploadSigner(key)
        first = http.post(INGEST, json=[make_record(key) for _ in range(4)])
        assert {r["status"] for r in first.json()["results"]} == {"accepted"}
        over = http.post(INGEST, json=[make_record(key) for _ in range(2)])
        assert (over.status_code, over.json()["error"]) == (429, "quota_exceeded")
        assert int(over.headers["Retry-After"]) >= 1


def test_quota_binds_a_key_s_records_sent_unsigned(tmp_path: Path) -> None:
    """Anyone may send a key's signed records without signing the request: the
    records still count against that key's quota, and a batch that would take
    it over is refused whole."""
    with start(tmp_path, ingest_quota_per_day="5") as collector, collector.client() as http:
        key = ProbeKey.generate()
        register(http, key)
        signed_batch = http.post(INGEST, json=[make_record(key) for _ in range(4)],
                                 auth=UploadSigner(key))
        assert {r["status"] for r in signed_batch.json()["results"]} == {"accepted"}
        over = http.post(INGEST, json=[make_record(key) for _ in range(2)])  # unsigned
        assert (over.status_code, over.json()["error"]) == (429, "quota_exceeded")
        assert key.key_id in over.json()["detail"]
        assert int(over.headers["Retry-After"]) >= 1
        last = http.post(INGEST, json=[make_record(key)])
        assert last.json()["results"][0]["status"] == "accepted"
        stored = http.get(INGEST, params={"limit": 100}).json()["items"]
    assert len(stored) == 5  # the refused batch wrote nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_uploads_cannot_pass_the_quota_together(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Each batch fits the key's room when it arrives; together they do not.
    The count made in the storing transaction lets exactly as many through as fit."""
    env = {**os.environ, "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "100"}
    with Collector(tmp_path / "c", database_url(backend, request), ["--workers", "2"],
                   env=env) as collector, collector.client() as http:
        key = ProbeKey.generate()
        register(http, key)
        batches = [json.dumps([make_record(key) for _ in range(30)]).encode()
                   for _ in range(8)]

        def upload(body: bytes) -> httpx.Response:
            return httpx.post(collector.url + INGEST, content=body,
                              headers=signed(key, INGEST, body), timeout=60)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(upload, batches))
        stored = http.get(INGEST, params={"limit": 1000}).json()["items"]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [429] * 5, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 429} == {
        "quota_exceeded"}
    assert len(stored) == 90


def test_a_resent_record_does_not_make_its_probe_look_alive(tmp_path: Path) -> None:
    """A published record sent again by anyone is a duplicate: it must not move
    its probe's last upload (operators spot silent probes by it)."""
    with start(tmp_path) as collector, collector.client() as http:
        key = ProbeKey.generate()
        register(http, key)
        record = make_record(key)
        assert http.post(INGEST, json=[record], auth=UploadSigner(key)
                         ).json()["results"][0]["status"] == "accepted"
        database = collector.data_dir / "collector.sqlite3"

        def last_seen() -> str:
            with sqlite3.connect(database) as conn:
                return str(conn.execute("SELECT last_seen_at FROM probes WHERE key_id = ?",
                                        (key.key_id,)).fetchone()[0])

        seen = last_seen()
        time.sleep(1.1)
        again = http.post(INGEST, json=[record])  # anonymous, unsigned
        assert again.json()["results"][0]["status"] == "duplicate"
        assert last_seen() == seen
        assert http.post(INGEST, json=[make_record(key)], auth=UploadSigner(key)
                         ).json()["results"][0]["status"] == "accepted"
        assert last_seen() > seen


def test_rejections_are_counted_without_the_write_lock(tmp_path: Path) -> None:
    with start(tmp_path) as collector, collector.client() as http:
        key, stranger = ProbeKey.generate(), ProbeKey.generate()
        register(http, key)
        http.auth = UploadSigner(key)
        forged = make_record(stranger)  # an unregistered key's records
        database = sqlite3.connect(collector.data_dir / "collector.sqlite3", timeout=1,
                                   isolation_level=None)
        database.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
        try:
            response = http.post(INGEST, json=[forged] * 3, timeout=5)
        finally:
            database.execute("ROLLBACK")
            database.close()
        assert [r["reason"] for r in response.json()["results"]] == ["unknown_key"] * 3
        thin = make_record(key)
        assert http.post(INGEST, json=[thin]).json()["results"][0]["status"] == "accepted"
        counts = dict(sqlite3.connect(collector.data_dir / "collector.sqlite3").execute(
            "SELECT reason, count FROM rejections").fetchall())
    assert counts.get("unknown_key") == 3  # written with the next write


@pytest.mark.parametrize("proxies", ["*", "127.0.0.1,*"])
def test_wildcard_trusted_proxies_refused_at_start(tmp_path: Path, proxies: str) -> None:
    from tests.collector.harness import CollectorFailed

    collector = Collector(tmp_path / "c", None, ["--forwarded-allow-ips", proxies])
    with pytest.raises(CollectorFailed) as failed:
        collector.start()
    assert "(2)" in str(failed.value) and "Traceback" not in str(failed.value)
    assert "forwarded-allow-ips" in str(failed.value) and "`*`" in str(failed.value)
