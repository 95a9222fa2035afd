"""Keyset pages of `GET /api/v1/measurements` (collector/cursor.py): opaque
cursors tied to their filters, the old numeric form still accepted, and
pages that together hold exactly what one query holds, for every kind of
filter (on SQLite each picks its own index: collector/store.py
`page_unindexed`)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import httpx
import pytest

from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, signing_client, unique_service

BASE = (utcnow() - timedelta(days=100)).replace(hour=0, minute=0, second=0, microsecond=0)
SINCE, UNTIL = rfc3339(BASE + timedelta(days=15)), rfc3339(BASE + timedelta(days=45))


@pytest.fixture(scope="module")
def stored(collector: Any) -> dict[str, Any]:
    """Records of two keys, one service of their own, mixed verdicts, links, networks."""
    service = unique_service()
    keys = [ProbeKey.generate(), ProbeKey.generate()]
    records = []
    client = signing_client(collector)
    try:
        for key in keys:
            register(client, key)
        for n, (key, verdict, link, asn) in enumerate(itertools.product(
                keys, ("open", "blocked"), ("cellular", "wifi"), (6713, 36884))):
            for i in range(3):
                records.append(make_record(
                    key, service, verdict=verdict,
                    blocking="tcp.reset" if verdict == "blocked" else None,
                    started_at=rfc3339(BASE + timedelta(days=30 * ((n + i) % 3), hours=i)),
                    network={"link_type": link, "cc": "MA", "asn": asn,
                             "attribution": "control"}))
        response = client.post("/api/v1/measurements", json=records)
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text
    finally:
        client.close()
    return {"service": service, "keys": keys, "records": records}


def _all(http: httpx.Client, params: dict[str, Any], limit: int) -> list[str]:
    ids, cursor = [], None
    while True:
        page = http.get("/api/v1/measurements",
                        params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [item["measurement"]["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
        assert not cursor.isdigit()  # opaque


def _matches(record: dict[str, Any], params: dict[str, Any]) -> bool:
    network, endpoint = record["network"], record["endpoint"]
    values = {"service": record["service"], "verdict": record["verdict"],
              "link_type": network["link_type"], "cc": network["cc"], "asn": network["asn"],
              "key_id": record["probe"]["key_id"], "check": endpoint["check"],
              "role": endpoint["role"]}
    started = record["started_at"]
    return (all(values[k] == v for k, v in params.items() if k in values)
            and started >= params.get("since", "") and started < params.get("until", "9"))


@pytest.mark.parametrize("extra", [
    {}, {"verdict": "blocked"}, {"link_type": "wifi"}, {"cc": "MA"}, {"asn": 36884},
    {"asn": 6713, "link_type": "cellular", "verdict": "open"}, {"key_id": 0},
    {"key_id": 1, "verdict": "blocked", "cc": "MA"}, {"since": SINCE},
    {"verdict": "blocked", "until": UNTIL}, {"since": SINCE, "until": UNTIL, "asn": 6713},
    {"check": "tcp", "role": "call"},
])
def test_pages_hold_what_one_query_holds(http: httpx.Client, stored: dict[str, Any],
                                         extra: dict[str, Any]) -> None:
    params = {"service": stored["service"], **extra}
    if "key_id" in extra:
        params["key_id"] = stored["keys"][extra["key_id"]].key_id
    whole = _all(http, params, 1000)
    assert whole and sorted(whole) == sorted(r["id"] for r in stored["records"]
                                             if _matches(r, params))
    assert _all(http, params, 2) == whole  # page after page, in one order
    assert _all(http, params, 5) == whole
    started = {r["id"]: r["started_at"] for r in stored["records"]}
    if "since" in params or "until" in params:  # in order of started_at, then arrival
        assert [started[i] for i in whole] == sorted(started[i] for i in whole)


def test_a_cursor_belongs_to_its_filters(http: httpx.Client, stored: dict[str, Any]) -> None:
    page = http.get("/api/v1/measurements",
                    params={"service": stored["service"], "limit": 3}).json()
    cursor = page["next_cursor"]
    other = http.get("/api/v1/measurements", params={"service": stored["service"],
                                                     "verdict": "open", "cursor": cursor})
    assert other.status_code == 400 and other.json()["error"] == "bad_cursor"
    tampered = [cursor[:i] + ("A" if cursor[i] != "A" else "B") + cursor[i + 1:]
                for i in range(12, len(cursor))]  # the fingerprint, the padding bits
    for bad in (cursor[:-1], *tampered, "k" + "-" * 19, "k" + "A" * 19, "z" + cursor[1:]):
        response = http.get("/api/v1/measurements",
                            params={"service": stored["service"], "cursor": bad})
        assert response.status_code == 400, (bad, response.text)


def test_a_time_cursor_belongs_to_its_filters(http: httpx.Client,
                                              stored: dict[str, Any]) -> None:
    params = {"service": stored["service"], "since": SINCE, "limit": 2}
    cursor = http.get("/api/v1/measurements", params=params).json()["next_cursor"]
    assert cursor.startswith("t") and len(cursor) == 31
    assert http.get("/api/v1/measurements", params={**params, "cursor": cursor}).status_code \
        == 200
    other = http.get("/api/v1/measurements", params={**params, "until": UNTIL,
                                                     "cursor": cursor})
    assert other.status_code == 400 and other.json()["error"] == "bad_cursor"
    tampered = [cursor[:i] + ("A" if cursor[i] != "A" else "B") + cursor[i + 1:]
                for i in range(23, len(cursor))]  # the fingerprint, the padding bits
    for bad in (cursor[:-1], *tampered, "t" + "_" * 30, "k" + cursor[1:]):
        response = http.get("/api/v1/measurements", params={**params, "cursor": bad})
        assert response.status_code == 400, (bad, response.text)


def test_numeric_cursors_still_work(http: httpx.Client, stored: dict[str, Any]) -> None:
    service = stored["service"]
    whole = http.get("/api/v1/measurements", params={"service": service}).json()["items"]
    first = http.get("/api/v1/measurements", params={"service": service, "limit": 1,
                                                     "cursor": "0"}).json()
    assert first["items"][0]["measurement"]["id"] == whole[0]["measurement"]["id"]
