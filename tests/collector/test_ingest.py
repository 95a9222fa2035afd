"""`POST /api/v1/measurements` against the real server, on SQLite and PostgreSQL:
what is accepted, what is a duplicate, what is rejected and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.core.record import MAX_DEPTH, rfc3339, utcnow
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector


def submit(http: httpx.Client, records: list[Any]) -> list[dict[str, Any]]:
    response = http.post("/api/v1/measurements", json=records)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(records)
    return results


def stored(http: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        params = {**filters, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/v1/measurements", params=params).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_accepted_then_duplicate_never_stored_twice(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    records = [make_record(key, service) for _ in range(5)]
    assert [r["status"] for r in submit(http, records)] == ["accepted"] * 5
    assert [r["id"] for r in submit(http, records)] == [r["id"] for r in records]
    again = submit(http, [*records, records[0]])
    assert {r["status"] for r in again} == {"duplicate"}
    items = stored(http, service=service)
    assert sorted(i["measurement"]["id"] for i in items) == sorted(r["id"] for r in records)


def test_duplicate_within_one_batch(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    record = make_record(key, service)
    assert [r["status"] for r in submit(http, [record, record])] == ["accepted", "duplicate"]
    assert len(stored(http, service=service)) == 1


def test_record_is_stored_verbatim(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    record = make_record(key, service)
    # unusual but valid spacing and number forms: the stored text is exactly this
    text = json.dumps(record, indent=1, ensure_ascii=True).replace("100.0", "1.000e2")
    response = http.post("/api/v1/measurements", content=f"[ {text} ]",
                         headers={"Content-Type": "application/json"})
    assert response.json()["results"][0]["status"] == "accepted"
    exported = http.get("/api/v1/export", params={"service": service}).text
    assert json.loads(exported)["measurement"] == json.loads(text)
    assert f'"measurement":{text},' in exported


def rejected(http: httpx.Client, record: Any) -> tuple[str, str | None]:
    result = submit(http, [record])[0]
    return result["status"], result["reason"]


def test_signature_failures(http: httpx.Client) -> None:
    key, other, service = ProbeKey.generate(), ProbeKey.generate(), unique_service()
    register(http, key)
    register(http, other)
    tampered = make_record(key, service)
    tampered["verdict"] = "blocked"
    assert rejected(http, tampered) == ("rejected", "bad_signature")
    nested = make_record(key, service)
    nested["evidence"]["connect_ms"] = 12.50001
    assert rejected(http, nested) == ("rejected", "bad_signature")
    # signed by another registered key while claiming this one
    forged = make_record(key, service)
    forged["signature"]["value"] = make_record(other, service)["signature"]["value"]
    assert rejected(http, forged) == ("rejected", "bad_signature")
    stranger = ProbeKey.generate()
    assert rejected(http, make_record(stranger, service)) == ("rejected", "unknown_key")
    unsigned = make_record(key, service)
    del unsigned["signature"]
    assert rejected(http, unsigned) == ("rejected", "no_signature")
    swapped = make_record(key, service)
    swapped["probe"]["public_key"] = other.public_b64
    assert rejected(http, key.sign(swapped)) == ("rejected", "key_mismatch")
    garbage = make_record(key, service)
    garbage["signature"]["value"] = "***"
    assert rejected(http, garbage) == ("rejected", "bad_signature")
    assert stored(http, service=service) == []


def test_non_ascii_keys_take_the_reference_path(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    record = make_record(key, service, evidence={"\ue000": 1, "\U0001f600": 2, "é": 0.5})
    assert rejected(http, record) == ("accepted", None)


def test_schema_and_time_bounds(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    assert rejected(http, make_record(key, service, verdict="maybe")) == ("rejected", "schema")
    assert rejected(http, make_record(key, service, schema="other/1")) == ("rejected", "schema")
    assert rejected(http, [1, 2]) == ("rejected", "schema")
    old = rfc3339(utcnow() - timedelta(days=401))  # beyond the default horizon of 400 days
    assert rejected(http, make_record(key, service, started_at=old)) == ("rejected", "too_old")
    ahead = rfc3339(utcnow() + timedelta(hours=1))
    assert rejected(http, make_record(key, service, started_at=ahead)) == (
        "rejected", "from_future")
    naive = make_record(key, service, started_at="2026-01-01T00:00:00")
    assert rejected(http, naive) == ("rejected", "schema")
    result = submit(http, [make_record(key, service, verdict="maybe")])[0]
    assert "verdict" in result["detail"]


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_forms_later_readers_misread_are_refused(http: httpx.Client) -> None:
    """One such record emptied the OONI export and broke verify-export of every
    export holding it: pydantic's lax mode read a Unix time as started_at, and
    orjson writes no more than 255 levels of nesting."""
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    now = utcnow()
    refused: dict[str, list[Any]] = {
        "started_at": [str(int(now.timestamp())), int(now.timestamp()),
                       f"{int(now.timestamp())}.5", rfc3339(now).replace("Z", "z"),
                       rfc3339(now).replace("T", " "), rfc3339(now).replace("Z", "+0000")],
        "runtime_ms": ["12", True],
        "network.asn": [{"link_type": "cellular", "asn": "36884"},
                        {"link_type": "cellular", "asn": True}],
        "endpoint.port": [{"check": "tcp", "host": "203.0.113.7", "port": "443",
                           "transport": "tcp", "role": "call"}],
    }
    records = []
    for where, values in refused.items():
        for value in values:
            records.append((where, make_record(key, service, **{where.split(".")[0]: value})))
    results = submit(http, [record for _, record in records])
    for (where, record), result in zip(records, results, strict=True):
        assert (result["id"], result["status"], result["reason"]) == (
            record["id"], "rejected", "schema"), (where, result)
        assert result["detail"].startswith(f"{where}: "), result["detail"]
        if where == "started_at":
            assert "RFC 3339 time with a time zone" in result["detail"]
    unix = results[0]["detail"]
    assert "a Unix time is not accepted" in unix and "2016-01-07T09:30:00.000Z" in unix
    assert "not a number" in results[1]["detail"]
    for levels in (260, MAX_DEPTH - 1):  # beyond orjson's limit; just beyond ours
        (result,) = submit(http, [make_record(key, service, evidence={"d": nested(levels)})])
        assert (result["status"], result["reason"]) == ("rejected", "schema")
        assert result["detail"] == (f"the record nests objects and arrays more than "
                                    f"{MAX_DEPTH} levels deep")
    assert stored(http, service=service) == []
    # what probes write is accepted: an offset, any fraction, nesting up to the limit
    fine = [make_record(key, service, started_at=rfc3339(now).replace("Z", "+00:00")),
            make_record(key, service, started_at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
            make_record(key, service, evidence={"d": nested(MAX_DEPTH - 2)})]
    assert [r["status"] for r in submit(http, fine)] == ["accepted"] * 3
    export = http.get("/api/v1/export", params={"format": "ooni", "service": service})
    assert export.status_code == 200 and len(export.text.splitlines()) == 3


def test_revoked_key(http: httpx.Client, collector: Collector) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    before = make_record(key, service)
    assert rejected(http, before) == ("accepted", None)
    revoke = collector.cli("probes", "revoke", key.key_id)
    assert revoke.returncode == 0, revoke.stderr
    assert rejected(http, make_record(key, service)) == ("rejected", "revoked_key")
    # earlier records stay, marked
    (item,) = stored(http, service=service)
    assert item["measurement"]["id"] == before["id"]
    assert item["key_revoked_at"] is not None
    again = http.post("/api/v1/probes", json={"public_key": key.public_b64})
    assert again.status_code == 403 and again.json()["error"] == "revoked_key"
    listing = collector.cli("probes", "list")
    assert f"{key.key_id}" in listing.stdout and "revoked" in listing.stdout


def test_mixed_batch_results_in_order(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    good = make_record(key, service)
    bad = make_record(key, service)
    bad["service"] = service + "-x"
    results = submit(http, [good, bad, good, make_record(ProbeKey.generate(), service)])
    assert [(r["id"], r["status"], r["reason"]) for r in results] == [
        (good["id"], "accepted", None), (bad["id"], "rejected", "bad_signature"),
        (good["id"], "duplicate", None), (results[3]["id"], "rejected", "unknown_key")]


MALFORMED = [
    b"", b"{}", b"not json", b"[1,]", b"[{\"a\":1,\"a\":2}]", b"[NaN]", b"[1e999]",
    b"[9007199254740993]", b"\xff\xfe", b"[1] [2]", b"[" * 5000, b'["\\ud800"', b"null",
]


def test_malformed_bodies_are_refused_whole(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    good = json.dumps(make_record(key, service)).encode()
    for body in [*MALFORMED, b"[" + good + b',{"x":1,"x":1}]']:
        response = http.post("/api/v1/measurements", content=body,
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body[:40], response.status_code, response.text)
        assert response.json()["error"] == "malformed_body"
    assert stored(http, service=service) == []


def test_size_limits(http: httpx.Client, collector: Collector) -> None:
    too_many = http.post("/api/v1/measurements", content=b"[" + b",".join([b"{}"] * 1001) + b"]")
    assert too_many.status_code == 413 and too_many.json()["error"] == "batch_too_large"
    huge = b"[" + b" " * (16 * 1024 * 1024 + 10) + b"]"
    response = http.post("/api/v1/measurements", content=huge)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(17):
            yield b" " * (1024 * 1024)
        yield b"]"

    streamed = http.post("/api/v1/measurements", content=chunks())
    assert streamed.status_code == 413


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                 lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
    st.lists(st.dictionaries(st.sampled_from(["id", "schema", "signature", "probe", "verdict",
                                               "started_at", "endpoint", "evidence"]),
                             st.one_of(st.text(), st.integers(), st.none(),
                                       st.dictionaries(st.text(), st.text()))),
             max_size=5).map(lambda v: json.dumps(v).encode()),
))
def test_no_server_error_on_any_input(http: httpx.Client, body: bytes) -> None:
    response = http.post("/api/v1/measurements", content=body,
                         headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
