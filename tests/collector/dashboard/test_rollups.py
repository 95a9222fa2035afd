"""The rollups behind the matrix (collector/dashboard/rollup.py): one vote per
probe and day, records dated ahead ignored, incremental upkeep at ingest equal
to a rebuild from the stored measurements, revoked keys left out; webhooks."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from nacl.signing import VerifyKey

from collector.dashboard.rollup import endpoint_verdict, rebuild_on, unit_verdict
from collector.db.engine import write_options
from collector.db.schema import (
    dash_endpoint_day,
    dash_key_version,
    dash_method,
    dash_series_day,
    dash_unit,
    measurements,
)
from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, UploadSigner, database_url
from tests.collector.harness import Collector

DAY0 = dt.datetime(2016, 3, 1, 9, tzinfo=dt.UTC)


def record(key: ProbeKey, service: str, when: dt.datetime, verdict: str, *,
           port: int = 3478, role: str = "call", link: str = "cellular",
           network: dict[str, Any] | None = None) -> dict[str, Any]:
    return key.sign({
        "schema": "voipwatch.measurement/1", "id": str(uuid.uuid4()),
        "started_at": rfc3339(when), "runtime_ms": 5,
        "probe": {"key_id": key.key_id, "software_version": "9.9.9",
                  "public_key": key.public_b64},
        "network": network or {"link_type": link}, "service": service,
        "endpoint": {"check": "stun", "host": "stun.example.net", "port": port,
                     "transport": "udp", "role": role},
        "verdict": verdict, "blocking": "stun.no_response" if verdict == "blocked" else None,
        "evidence": {}})


def test_unit_rules() -> None:
    # an endpoint's day: the majority of its conclusive measurements, a tie inconclusive
    assert endpoint_verdict((5, 1, 0, 3)) == "open"
    assert endpoint_verdict((1, 1, 0, 0)) == "inconclusive"
    assert endpoint_verdict((0, 0, 0, 4)) == "inconclusive"
    # the path: blocked if any endpoint is (the results table's rule)
    assert unit_verdict([(3, 0, 0, 0), (0, 2, 0, 0)]) == "blocked"
    assert unit_verdict([(5, 1, 0, 0), (3, 0, 0, 0)]) == "open"  # one flaky attempt


@pytest.fixture(scope="module", params=BACKENDS)
def collector(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    db = database_url(request.param, request)
    data_dir = tmp_path_factory.mktemp(f"rollups-{request.param}")
    env = {"VOIPWATCH_COLLECTOR_DASHBOARD_REFRESH_SECONDS": "0.3"}
    import os

    with Collector(data_dir, db, ["--max-record-age-days", "0"], env={**os.environ, **env}
                   ) as running:
        yield running


def _engine(collector: Collector) -> sa.Engine:
    from collector.db.engine import make_engine

    return make_engine(collector.db or f"sqlite:///{collector.data_dir}/collector.sqlite3")


def _upload(collector: Collector, keys: list[ProbeKey], records: list[dict[str, Any]]) -> None:
    with collector.client() as client:
        for key in keys:
            reply = client.post("/api/v1/probes", json={"public_key": key.public_b64})
            assert reply.status_code in (200, 201), reply.text
        client.auth = UploadSigner(keys[0])  # signed, as the probe's uploader sends
        for start in range(0, len(records), 500):
            answer = client.post("/api/v1/measurements", json=records[start:start + 500])
            assert {r["status"] for r in answer.json()["results"]} == {"accepted"}, answer.text


def _cell(collector: Collector, service: str, query: str = "") -> str:
    with collector.client() as client:
        return client.get(f"/cell?service={service}&role=call&cc=&operator=&link=cellular"
                          f"&from=2016-03-01&to=2016-03-31{query}").text


def test_one_key_cannot_outvote_many(collector: Collector) -> None:
    """Three probes say open once a day; a fourth key floods `blocked` (200 a
    day) and dates some records ahead of their arrival: the cell stays open,
    says 4 probes, 1 of them disagreeing, and counts the flood once a day."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    honest = [ProbeKey.generate() for _ in range(3)]
    liar = ProbeKey.generate()
    records = [record(k, service, DAY0 + dt.timedelta(days=d), "open")
               for k in honest for d in range(10)]
    records += [record(liar, service, DAY0 + dt.timedelta(days=d, minutes=m), "blocked")
                for d in range(10) for m in range(0, 200)]
    ahead = [record(liar, service, utcnow() + dt.timedelta(minutes=9), "blocked")
             for _ in range(5)]
    _upload(collector, [*honest, liar], records + ahead)
    html = _cell(collector, service)
    assert 'class="summary v-open"' in html and "4 probes" in html
    assert "probes disagree" in html
    engine = _engine(collector)
    with engine.connect() as conn:
        u = dash_unit.c
        days = conn.execute(sa.select(sa.func.sum(u.u_blocked)).where(
            u.span == "d", u.key_id == liar.key_id)).scalar_one()
        ahead_count = conn.execute(sa.select(dash_key_version.c.n_ahead).where(
            dash_key_version.c.key_id == liar.key_id)).scalar_one()
    assert days == 10 and ahead_count == 5  # one unit a day; dated-ahead records not counted


def _dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with engine.connect() as conn:
        for table in (dash_endpoint_day, dash_unit, dash_method, dash_key_version,
                      dash_series_day):
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted(tuple(str(v) for v in row) for row in rows)
    return out


def test_incremental_rollups_equal_a_rebuild(collector: Collector) -> None:
    """Batches arriving in any order, verdicts flipping within a day and across
    months: what ingest maintained equals `dashboard rebuild` from the table."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    keys = [ProbeKey.generate() for _ in range(3)]
    import random

    rng = random.Random(7)
    records = [record(rng.choice(keys), service, DAY0 + dt.timedelta(hours=rng.randrange(24 * 70)),
                      rng.choice(["open", "open", "blocked", "inconclusive"]),
                      port=rng.choice([3478, 19302]), role=rng.choice(["call", "messaging"]),
                      link=rng.choice(["cellular", "adsl"])) for _ in range(600)]
    rng.shuffle(records)
    for start in range(0, len(records), 37):
        _upload(collector, keys, records[start:start + 37])
    engine = _engine(collector)
    before = _dump(engine)
    result = subprocess.run([collector.program, "dashboard", "rebuild", *collector.db_args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _dump(engine) == before
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(measurements)).scalar_one()
    # the operator is told how much there is and that uploads wait meanwhile
    assert f"rolling up {stored:,} measurements again, in one transaction" in result.stderr
    read: list[int] = []
    with engine.connect().execution_options(**write_options(engine)) as conn, conn.begin():
        count = rebuild_on(conn, chunk=250, progress=read.append)
    assert f"rolled up {count} measurements" in result.stdout
    assert read == [*range(250, stored, 250), stored] and _dump(engine) == before


def test_a_redacted_key_leaves_the_rollups(collector: Collector) -> None:
    """`redact` deletes a key's records and everything the dashboard rolled up
    from them (its units, methods, versions, its share of the daily totals):
    afterwards the rollups are what a rebuild from the remaining records makes,
    and the cell counts one probe fewer."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    keys = [ProbeKey.generate() for _ in range(3)]
    gone = keys[1]
    import random

    rng = random.Random(11)
    records = [record(k, service, DAY0 + dt.timedelta(hours=rng.randrange(24 * 40)),
                      rng.choice(["open", "blocked", "blocked", "inconclusive"]),
                      port=rng.choice([3478, 19302]), role=rng.choice(["call", "messaging"]),
                      link=rng.choice(["cellular", "adsl"]))
               for k in keys for _ in range(120)]
    _upload(collector, keys, records)
    assert "3 probes" in _cell(collector, service)
    result = collector.cli("redact", "--key-id", gone.key_id, "--reason", "volunteer asked")
    assert result.returncode == 0 and "deleted 120 records" in result.stdout, result.stderr
    engine = _engine(collector)
    after = _dump(engine)
    with engine.connect() as conn:
        for table in (dash_endpoint_day, dash_unit, dash_method, dash_key_version):
            left = conn.execute(sa.select(sa.func.count()).select_from(table)
                                .where(table.c.key_id == gone.key_id)).scalar_one()
            assert left == 0, table.name
    rebuilt = subprocess.run([collector.program, "dashboard", "rebuild", *collector.db_args],
                             capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _dump(engine) == after
    assert "2 probes" in _cell(collector, service)


def test_revoked_keys_are_left_out(collector: Collector) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    good, bad = ProbeKey.generate(), ProbeKey.generate()
    _upload(collector, [good, bad], [record(good, service, DAY0, "open"),
                                     record(bad, service, DAY0, "blocked")])
    assert "2 probes" in _cell(collector, service)
    collector.cli("probes", "revoke", bad.key_id, check=True)
    html = _cell(collector, service)
    assert "1 probe" in html and 'class="summary v-open"' in html


def test_signed_attribution_and_upstream(collector: Collector) -> None:
    """The record's signed network decides the operator column; a Wi-Fi link
    whose upstream is cellular (a phone's hotspot) goes to the cellular column."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    key = ProbeKey.generate()
    network = {"link_type": "wifi", "upstream": "cellular", "upstream_source": "hotspot",
               "cc": "MA", "asn": 36884, "as_org": "Inwi", "attribution": "control"}
    _upload(collector, [key], [record(key, service, DAY0, "blocked", network=network)])
    with collector.client() as client:
        page = client.get(f"/?from=2016-03-01&to=2016-03-01&service={service}").text
        cell = client.get(f"/cell?service={service}&role=call&cc=MA&operator=AS36884"
                          "&link=cellular&from=2016-03-01&to=2016-03-01").text
    assert "AS36884 Inwi (MA)" in page and "cellular by upstream" in page
    assert "operator by upload address" not in cell


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhooks_are_signed_and_sent_once(collector: Collector) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received.clear()
    service = f"svc-{uuid.uuid4().hex[:8]}"
    token = subprocess.run([collector.program, "operator", "create", *collector.db_args],
                           check=True, capture_output=True, text=True).stdout.strip()
    try:
        with collector.client() as client:
            answer = client.post("/api/v1/subscriptions", headers={
                "Authorization": f"Bearer {token}"}, json={
                "url": f"http://127.0.0.1:{server.server_port}/hook", "service": service})
            assert answer.status_code == 201
            secret = answer.json()["secret"]
        key = ProbeKey.generate()
        _upload(collector, [key], [
            record(key, service, DAY0 + dt.timedelta(days=d), "blocked" if d >= 20 else "open")
            for d in range(30)])
        deadline = time.monotonic() + 20
        while not _Hook.received and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # a second delivery, if there were one, would have come by now
    finally:
        server.shutdown()
    assert len(_Hook.received) == 1
    headers, body = _Hook.received[0]
    stamp = headers["x-voipwatch-timestamp"]
    expected = hmac.new(bytes.fromhex(secret), stamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-voipwatch-signature"], f"sha256={expected}")
    # and by the collector's own key, as published: checkable without the secret
    with collector.client() as client:
        published = client.get("/api/v1/collector").json()
    assert headers["x-voipwatch-collector-key"] == published["key_id"]
    scheme, _, signature = headers["x-voipwatch-collector-signature"].partition("=")
    assert scheme == "ed25519"
    VerifyKey(base64.b64decode(published["public_key"])).verify(
        stamp.encode() + b"." + body, base64.b64decode(signature))
    change = json.loads(body)["change"]
    assert (change["service"], change["kind"], change["at"]) == (service, "start",
                                                                 "2016-03-21")


def test_a_throttle_measurement_shows_both_flows(collector: Collector) -> None:
    """The measurement page puts the call-like flow and its bit-inverted control side
    by side (Wehe-style), from the signed record, without any inline style (CSP)."""
    from tests.probe.ui.test_throttle_view import throttle_record

    key = ProbeKey.generate()
    shaped = throttle_record(64.0, 254.9, 0.12, "yes")
    signed = record(key, f"svc-{uuid.uuid4().hex[:8]}", DAY0, "open")
    del signed["signature"]
    signed.update(endpoint=shaped["endpoint"], evidence=shaped["evidence"],
                  verdict="throttled", blocking="throttle.rate")
    signed = key.sign(signed)
    _upload(collector, [key], [signed])
    with collector.client() as client:
        page = client.get(f"/measurements/{signed['id']}").text
        french = client.get(f"/measurements/{signed['id']}?lang=fr").text
    table = page[page.index('<table class="vw-throttle">'):]
    table = table[:table.index("</table>")]
    assert "rate differs" in table and "64" in table and "254.9" in table
    assert "12%" in table and "style=" not in table
    assert 'class="vw-throttle"' in french


def test_concurrent_uploads_upsert_in_one_order(postgres: Any, tmp_path: Any) -> None:
    """Two API processes, the transparency log off (its lock no longer takes
    the ingest transactions one at a time): batches that touch the same
    rollup rows, one in ascending and one in descending order, with verdicts
    that flip the day's units, are all stored, and the rollups equal a rebuild.
    Upserts in arrival order deadlocked PostgreSQL here; without a lock on
    the series, each transaction judged a unit from the other's old counts."""
    keys = [ProbeKey.generate() for _ in range(2)]
    service = f"svc-{uuid.uuid4().hex[:8]}"
    ports = list(range(20000, 20150))
    with Collector(tmp_path / "c", postgres.create_database(),
                   ["--workers", "2", "--no-transparency-log", "--max-record-age-days", "0"]
                   ) as running:
        _upload(running, keys, [])
        failures: list[str] = []
        start = threading.Barrier(2)

        def send(order: list[int], verdicts: tuple[str, str], apart: list[int]) -> None:
            with running.client() as client:
                for round_ in range(12):
                    if round_ == 6 and order[0] > order[-1]:
                        order = apart  # one side moves to other endpoints of the same units
                    key = keys[round_ % 2]
                    client.auth = UploadSigner(key)
                    verdict = verdicts[round_ % 2]
                    batch = [record(key, service, DAY0 + dt.timedelta(minutes=round_), verdict,
                                    port=port) for port in order]
                    start.wait()
                    answer = client.post("/api/v1/measurements", json=batch, timeout=60)
                    statuses = {r["status"] for r in answer.json().get("results", [])} \
                        if answer.status_code == 200 else set()
                    if statuses != {"accepted"}:
                        failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")

        # the same rows (endpoint days) in opposite orders; then the same units
        # from different endpoints
        others = [port + 10000 for port in ports]
        threads = [threading.Thread(target=send, args=args) for args in (
            (ports, ("open", "blocked"), others), (ports[::-1], ("blocked", "open"), others))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        engine = _engine(running)
        with engine.connect() as conn:
            e = dash_endpoint_day.c
            counted = conn.execute(sa.select(sa.func.sum(e.n_open + e.n_blocked))
                                   .where(e.key_id.in_([k.key_id for k in keys]))).scalar_one()
        assert counted == 2 * 12 * len(ports)
        before = _dump(engine)
        result = subprocess.run([running.program, "dashboard", "rebuild", *running.db_args],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert _dump(engine) == before


def _units_per_day(conn: sa.Connection, series_id: int) -> dict[dt.date, tuple[int, int]]:
    """The detector's history the long way: every live probe-day of the series."""
    from collector.dashboard.cells import _live

    u = dash_unit.c
    rows = conn.execute(sa.select(u.start, sa.func.sum(u.u_open),
                                  sa.func.sum(u.u_blocked + u.u_throttled))
                        .where(u.span == "d", u.series_id == series_id, _live(dash_unit))
                        .group_by(u.start)).all()
    return {dt.date.fromisoformat(str(r[0])[:10]): (int(r[1]), int(r[2])) for r in rows
            if r[1] or r[2]}


def test_the_detector_reads_one_row_a_day_equal_to_the_live_units(collector: Collector
                                                                  ) -> None:
    """Change detection reads the per-series days (one row a day); they say what
    the probe-days of unrevoked keys say, before and after a revocation."""
    from collector.dashboard.changestore import series_days
    from collector.db.schema import dash_series

    service = f"svc-{uuid.uuid4().hex[:8]}"
    keys = [ProbeKey.generate() for _ in range(3)]
    import random

    rng = random.Random(11)
    records = [record(key, service, DAY0 + dt.timedelta(days=d, hours=rng.randrange(20)),
                      rng.choice(["open", "blocked", "throttled", "inconclusive"]),
                      port=rng.choice([3478, 19302]))
               for key in keys for d in range(30) for _ in range(rng.randrange(1, 4))]
    _upload(collector, keys, records)
    engine = _engine(collector)
    histories = []
    for revoke in (False, True):
        if revoke:
            collector.cli("probes", "revoke", keys[0].key_id, check=True)
        with engine.connect() as conn:
            (series_id,) = conn.execute(sa.select(dash_series.c.id)
                                        .where(dash_series.c.service == service)).scalars()
            others = list(conn.execute(sa.select(dash_series.c.id)
                                       .where(dash_series.c.id != series_id)).scalars())
            read_all = series_days(conn, [series_id, *others])  # a batch, read at once
            for other in others:
                assert {d.day: (d.open, d.interfered) for d in read_all[other]
                        if d.open or d.interfered} == _units_per_day(conn, other)
            read = {d.day: (d.open, d.interfered) for d in read_all[series_id]
                    if d.open or d.interfered}
            assert read == _units_per_day(conn, series_id)
            histories.append(read)
    assert histories[0] != histories[1] and len(histories[0]) >= 30
