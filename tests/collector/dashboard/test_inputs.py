"""The dashboard's pages answer a client's bad input with a 4xx, never a 500:
days at or past the calendar's ends, drill-down cursors without a time zone
or beyond 64 bits; a stored record nested deeper than orjson writes still
renders; the drill-down reads records a few at a time, whatever their size."""

from __future__ import annotations

import html
import json
import re
import tracemalloc
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from collector.dashboard.cells import Period, Where
from collector.db.engine import make_engine
from collector.db.schema import measurements
from collector.routers import dashboard
from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, signing_client, unique_service
from tests.collector.harness import Collector

TODAY = (utcnow() - timedelta(hours=1)).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
def stored(collector: Collector) -> dict[str, Any]:
    """A service of its own: 250 records over three days, half of them filed
    under MA and half under TN (signed attribution), of one key."""
    service, key = unique_service(), ProbeKey.generate()
    client = signing_client(collector)
    try:
        register(client, key)
        records = [make_record(key, service, started_at=rfc3339(
            TODAY - timedelta(days=i % 3, minutes=i)), network={
                "link_type": "cellular", "cc": "MA" if i % 2 else "TN", "asn": 36884,
                "attribution": "control"}, endpoint={
                "check": "tcp", "host": "203.0.113.7", "port": 443, "transport": "tcp",
                "role": "call", "label": f"label-{i}"}) for i in range(250)]
        answer = client.post("/api/v1/measurements", json=records)
        assert {r["status"] for r in answer.json()["results"]} == {"accepted"}, answer.text
    finally:
        client.close()
    return {"service": service, "key": key, "records": records}


@pytest.fixture(scope="module")
def engine(collector: Collector) -> Iterator[sa.Engine]:
    """The running collector's own database."""
    made = make_engine(collector.db or f"sqlite:///{collector.data_dir / 'collector.sqlite3'}")
    try:
        yield made
    finally:
        made.dispose()


def _pages(stored: dict[str, Any]) -> list[str]:
    service = stored["service"]
    return ["/", f"/cell?service={service}&role=call&cc=MA&operator=AS36884&link=cellular",
            f"/timeline?service={service}&cc=MA&operator=AS36884",
            f"/measurements?service={service}", "/changes"]


@pytest.mark.parametrize("query", ["from=9999-12-31", "to=9999-12-31",
                                   "from=9999-01-01&to=9999-12-31"])
def test_days_past_the_last_the_dashboard_shows_are_400(
        http: httpx.Client, stored: dict[str, Any], query: str) -> None:
    for page in _pages(stored):
        url = page + ("&" if "?" in page else "?") + query
        response = http.get(url)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"] == "bad_period", url
        assert "the dashboard shows days up to 9998-12-31" in response.json()["detail"]


@pytest.mark.parametrize("query", ["to=0001-01-01", "from=0001-01-01&to=0001-01-31",
                                   "from=9998-12-31", "to=9998-12-31",
                                   "from=9998-12-01&to=9998-12-31", "from=9997-12-31"])
def test_the_calendars_ends_render(http: httpx.Client, stored: dict[str, Any],
                                   query: str) -> None:
    for page in _pages(stored):
        url = page + ("&" if "?" in page else "?") + query
        response = http.get(url)
        # a cell, a timeline with nothing in the period still renders (its series exists)
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("cursor", [
    "2026-11-29T00:00:00~1",  # no time zone
    "2026-11-29~1", "~1", "1", "",
    "2026-11-29T00:00:00+00:00~99999999999999999999999",  # beyond SQLite's 64 bits
    f"2026-11-29T00:00:00+00:00~{2**63}", "2026-11-29T00:00:00+00:00~-1",
    "2026-11-29T00:00:00+00:00~\u0663", "2026-11-29T00:00:00+00:00~ 1",
    "2026-11-29T00:00:00+00:00~1_0", "2026-11-29T00:00:00+00:00~",
    "0001-01-01T00:00:00+01:00~1",  # year 0 once in UTC
    "9999-12-31T23:59:59-01:00~1", "x~1"])
def test_bad_drilldown_cursors_are_400(http: httpx.Client, stored: dict[str, Any],
                                       cursor: str) -> None:
    response = http.get("/measurements", params={"service": stored["service"],
                                                 "cursor": cursor})
    if cursor == "":  # no cursor: the first page
        assert response.status_code == 200
        return
    assert response.status_code == 400, (cursor, response.text)
    assert response.json() == {"error": "bad_cursor",
                               "detail": "cursor: pass back the link's value"}


def test_drilldown_pages_follow_their_links(http: httpx.Client,
                                            stored: dict[str, Any]) -> None:
    """Every MA record once, oldest first, over pages of 100 (the rows are read
    in chunks: pages are what they were)."""
    expected = sorted((r for r in stored["records"] if r["network"]["cc"] == "MA"),
                      key=lambda r: r["started_at"])
    start = (TODAY - timedelta(days=3)).date().isoformat()
    url: str | None = (f"/measurements?service={stored['service']}&role=call&cc=MA"
                       f"&operator=AS36884&link=cellular&from={start}")
    ids: list[str] = []
    pages = 0
    while url:
        page = http.get(url)
        assert page.status_code == 200, page.text
        found = _listed_ids(page.text)
        assert len(found) <= dashboard.PAGE
        ids += found
        pages += 1
        url = _next(page.text)
    assert ids == [r["id"] for r in expected] and pages == 2
    first = http.get(f"/measurements?service={stored['service']}&cc=MA&from={start}").text
    assert "label-1" in first and "label-0<" not in first  # the endpoint's label, as before


def _listed_ids(text: str) -> list[str]:
    return re.findall(r'href="/measurements/([0-9a-f-]{36})"', text)


def _next(text: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', text)
    return html.unescape(found.group(1)) if found else None


@pytest.mark.parametrize("scan", [25, dashboard.SCAN])
def test_chunked_reads_give_the_same_pages(engine: sa.Engine, stored: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch, scan: int) -> None:
    """Read a chunk at a time or all of SCAN at once (as before), the pages and
    their cursors are the same."""
    monkeypatch.setattr(dashboard, "SCAN", scan)
    period = Period(TODAY.date() - timedelta(days=5), TODAY.date())
    where = Where(cc="MA", service=stored["service"], role="call", operator="AS36884",
                  link="cellular")

    def pages(chunk: int) -> list[tuple[list[str], Any]]:
        out: list[tuple[list[str], Any]] = []
        cursor = None
        while True:
            rows, cursor = dashboard._cell_rows(engine, where, period, cursor, chunk)
            out.append(([r.id for r in rows], cursor))
            if cursor is None:
                return out

    whole = pages(max(scan, dashboard.CHUNK))
    for chunk in (1, 7, 64):
        assert pages(chunk) == whole
    assert [i for ids, _ in whole for i in ids] == [
        r["id"] for r in sorted(stored["records"], key=lambda r: r["started_at"])
        if r["network"]["cc"] == "MA"]


def test_a_deeply_nested_stored_record_renders(http: httpx.Client, engine: sa.Engine,
                                               stored: dict[str, Any]) -> None:
    """A record stored before ingest refused deep nesting (orjson writes 254
    levels at most) shows, signature verified, its evidence laid out."""
    key = stored["key"]
    plain = make_record(key, stored["service"])
    answer = http.post("/api/v1/measurements", json=[plain])
    assert answer.json()["results"][0]["status"] == "accepted", answer.text
    nested: Any = 1
    for _ in range(260):
        nested = [nested]
    deep = make_record(key, stored["service"], id=plain["id"], started_at=plain["started_at"],
                       evidence={"d": nested})
    with engine.begin() as conn:  # as if stored then: ingest may refuse it now
        conn.execute(sa.update(measurements).where(measurements.c.id == plain["id"])
                     .values(record=json.dumps(deep)))
    page = http.get(f"/measurements/{plain['id']}")
    assert page.status_code == 200, page.text
    assert "Signature verified by this collector" in page.text
    assert page.text.count("[") >= 2 * 260  # evidence and the indented record, all of it
    assert " " * 2 * 261 + "1" in page.text  # indented two spaces a level
    raw = http.get(f"/measurements/{plain['id']}.json")
    assert raw.status_code == 200 and raw.json() == deep


def test_indented_deep_matches_orjson() -> None:
    value = {"a": [1, 2.5, {"b": None, "c": True}], "d": {}, "e": [], "f": "é ✓\"\n",
             "g": [[]], "h": -3}
    assert dashboard._indented_deep(value) == orjson.dumps(
        value, option=orjson.OPT_INDENT_2).decode()
    deep: Any = {"x": 1}
    for _ in range(400):  # 800 levels: orjson reads 1024, writes 254
        deep = {"k": [deep]}
    assert orjson.loads(dashboard.indented(deep)) == deep


def test_the_drilldown_holds_few_records_at_once(collector: Collector,
                                                 engine: sa.Engine) -> None:
    """600 records of about 60 KB (36 MB of record text): a drill-down page
    that looks at every one of them (none matches) keeps a few chunks of
    records in memory, not all of them, and keeps no record's text."""
    service, key = unique_service(), ProbeKey.generate()
    client = signing_client(collector)
    size = 0
    try:
        register(client, key)
        for batch in range(3):
            records = [make_record(key, service, evidence={"blob": ["y" * 100] * 580},
                                   started_at=rfc3339(TODAY - timedelta(minutes=batch * 200 + i)))
                       for i in range(200)]
            size += sum(len(json.dumps(r)) for r in records)
            answer = client.post("/api/v1/measurements", json=records)
            assert answer.status_code == 200, answer.text[:300]
            assert {r["status"] for r in answer.json()["results"]} == {"accepted"}
    finally:
        client.close()
    period = Period(TODAY.date() - timedelta(days=2), TODAY.date())
    chunk = dashboard.chunk_rows(64 * 1024)  # the default max_record_bytes
    assert chunk * 64 * 1024 <= dashboard.READ_BYTES
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM measurements" in statement:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        # a dry run first: the engine's connections and compiled queries are cached
        dashboard._cell_rows(engine, Where(cc="ZZ", service=service), period, None, chunk)
        statements.clear()
        tracemalloc.start()
        try:
            rows, more = dashboard._cell_rows(engine, Where(cc="ZZ", service=service), period,
                                              None, chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        reads = len(statements)
        listed, _ = dashboard._cell_rows(engine, Where(service=service), period, None, chunk)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert rows == [] and more is None and size > 35_000_000
    assert reads == -(-600 // chunk)  # all 600 read, a chunk at a time
    assert peak < 12 * 1024 * 1024, peak  # against 36 MB of text read at once before
    assert len(listed) == dashboard.PAGE and all(
        isinstance(r, dashboard.Listed) and not hasattr(r, "record") for r in listed)


def test_days_and_shifts_stay_in_the_calendar() -> None:
    from collector.dashboard.pages import FIRST_DAY, LAST_DAY, period_of, shift
    assert shift(date(1, 1, 5), -30) == FIRST_DAY and shift(date(9998, 12, 20), 30) == LAST_DAY
    assert shift(date(2016, 1, 7), -6) == date(2016, 1, 1)
    assert period_of(None, "0001-01-01", None) == Period(FIRST_DAY, FIRST_DAY)
    assert period_of("9998-12-31", None, (date(2016, 1, 1), date(2016, 6, 1))) == Period(
        LAST_DAY, LAST_DAY)
    # stored records dated at the calendar's ends (no horizon at ingest)
    assert period_of(None, None, (date(1, 1, 1), date(9999, 12, 31))).end == LAST_DAY
    assert period_of(None, None, (date(1, 1, 1), date(1, 2, 1))) == Period(
        FIRST_DAY, date(1, 2, 1))
