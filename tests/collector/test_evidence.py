"""The collector's evidence against the real server, on SQLite and PostgreSQL:
its key, signed receipts, the transparency log (heads, inclusion and
consistency proofs checked with probe.core.merkle), late records, and the
attribution a record is filed under."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import httpx

from probe.core import merkle
from probe.core.evidence import (
    head_hashes,
    hexes,
    leaf_bytes,
    leaf_problems,
    record_sha256,
    verify_object,
)
from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector


def collector_key(http: httpx.Client) -> bytes:
    body = http.get("/api/v1/collector").json()
    raw = base64.b64decode(body["public_key"])
    assert body["key_id"] == __import__("hashlib").sha256(raw).hexdigest()
    return raw


def submit(http: httpx.Client, records: list[Any]) -> list[dict[str, Any]]:
    response = http.post("/api/v1/measurements", json=records)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_the_key_is_kept_private_and_stable(collector: Collector, http: httpx.Client) -> None:
    path = collector.data_dir / "collector.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert collector_key(http) == collector_key(http)


def test_receipts_name_the_record_and_its_log_entry(http: httpx.Client) -> None:
    public = collector_key(http)
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    records = [make_record(key, service) for _ in range(3)]
    results = submit(http, records)
    indexes = []
    for record, result in zip(records, results, strict=True):
        assert result["status"] == "accepted"
        receipt = result["receipt"]
        verify_object(receipt, public, "receipt")
        assert receipt["record_id"] == record["id"]
        assert receipt["record_sha256"] == record_sha256(record)
        assert set(receipt) == {"record_id", "record_sha256", "log_index", "received_at",
                                "signature"}
        indexes.append(receipt["log_index"])
    assert indexes == list(range(indexes[0], indexes[0] + 3))
    # a duplicate gets the same receipt, byte for byte (Ed25519 is deterministic)
    again = submit(http, [records[1], records[1]])
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    assert again[0]["receipt"] == again[1]["receipt"] == results[1]["receipt"]
    # rejected records get none
    assert "receipt" not in submit(http, [make_record(ProbeKey.generate(), service)])[0]


def test_the_log_proves_inclusion_and_growth(http: httpx.Client) -> None:
    public = collector_key(http)
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    first = submit(http, [make_record(key, service) for _ in range(2)])
    head1 = http.get("/api/v1/log/head").json()
    verify_object(head1, public, "tree head")
    size1, root1 = head_hashes(head1)
    records = [make_record(key, service) for _ in range(5)]
    results = submit(http, records)
    head2 = http.get("/api/v1/log/head").json()
    verify_object(head2, public, "tree head")
    size2, root2 = head_hashes(head2)
    assert size2 >= size1 + 5
    for record, result in zip(records, results, strict=True):
        index = result["receipt"]["log_index"]
        proof = http.get("/api/v1/log/inclusion",
                         params={"index": index, "tree_size": size2}).json()
        leaf = proof["leaf"]
        assert leaf["record_sha256"] == record_sha256(record) and not leaf_problems(leaf, record)
        assert merkle.leaf_hash(leaf_bytes(leaf)).hex() == proof["leaf_hash"]
        assert merkle.verify_inclusion(index, size2, merkle.leaf_hash(leaf_bytes(leaf)),
                                       hexes(proof["audit_path"]), root2)
        assert not merkle.verify_inclusion(index, size2, merkle.leaf_hash(b"other"),
                                           hexes(proof["audit_path"]), root2)
    earlier = first[0]["receipt"]["log_index"]
    old = http.get("/api/v1/log/inclusion", params={"index": earlier, "tree_size": size1}).json()
    assert merkle.verify_inclusion(earlier, size1, bytes.fromhex(old["leaf_hash"]),
                                   hexes(old["audit_path"]), root1)
    proof = http.get("/api/v1/log/consistency", params={"first": size1, "second": size2}).json()
    assert merkle.verify_consistency(size1, size2, root1, root2, hexes(proof["consistency_path"]))
    # the leaves rebuild the root
    leaves = http.get("/api/v1/log/leaves", params={"start": 0, "end": size2}).json()["items"]
    assert [item["index"] for item in leaves] == list(range(size2))
    assert merkle.root_of(merkle.leaf_hash(leaf_bytes(i["leaf"])) for i in leaves) == (size2,
                                                                                       root2)
    heads = http.get("/api/v1/log/heads").json()["items"]
    assert [h["tree_size"] for h in heads] == sorted(h["tree_size"] for h in heads)
    for params, code in (({"index": size2, "tree_size": size2}, "bad_range"),
                         ({"index": 0, "tree_size": size2 + 100}, "bad_range")):
        response = http.get("/api/v1/log/inclusion", params=params)
        assert (response.status_code, response.json()["error"]) == (400, code)
    response = http.get("/api/v1/log/consistency", params={"first": size2, "second": size1})
    assert response.status_code == 400


def test_late_records_are_accepted_and_marked(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    started = utcnow() - timedelta(days=120)  # a months-long shutdown
    (result,) = submit(http, [make_record(key, service, started_at=rfc3339(started))])
    assert result["status"] == "accepted"
    assert abs(result["late"]["delay_seconds"] - 120 * 86400) < 120
    (fresh,) = submit(http, [make_record(key, service)])
    assert "late" not in fresh
    items = http.get("/api/v1/measurements", params={"service": service}).json()["items"]
    assert sorted(i["late_seconds"] is None for i in items) == [False, True]


def test_signed_attribution_wins_and_the_upload_lookup_stays_apart(
        http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    signed = {"link_type": "cellular", "cc": "MA", "asn": 36903, "as_org": "Maroc Telecom",
              "resolver_asn": 36903, "attribution": "control"}
    results = submit(http, [make_record(key, service, network=signed),
                            make_record(key, service)])
    assert {r["status"] for r in results} == {"accepted"}
    (item,) = http.get("/api/v1/measurements", params={"service": service, "cc": "MA"}
                       ).json()["items"]
    assert (item["probe_cc"], item["probe_asn"], item["attribution"]) == ("MA", 36903, "control")
    # the upload came from loopback: its look-up found nothing, nothing was overwritten
    assert item["upload"] == {"cc": None, "asn": None, "as_org": None}
    assert http.get("/api/v1/measurements", params={"service": service, "asn": 36903}
                    ).json()["items"][0]["measurement"]["id"] == results[0]["id"]
    unsigned = http.get("/api/v1/measurements", params={"service": service}).json()["items"]
    assert sorted(i["attribution"] for i in unsigned) == ["control", "none"]
