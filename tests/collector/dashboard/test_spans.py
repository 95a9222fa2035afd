"""A period is read from monthly, weekly and daily rollups
(collector/dashboard/cells.py `spans`): every day of it exactly once, and the
matrix it gives equals the one summed from the daily rows alone."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector.dashboard import cells as cells_module
from collector.dashboard import rollup
from collector.dashboard.cells import DashboardReader, Period, spans
from collector.db.engine import make_engine
from collector.db.migrate import upgrade

FIRST = dt.date(2015, 12, 20)


def _days(span: str, start: dt.date, end: dt.date) -> list[dt.date]:
    out, day = [], start
    while day < end:
        assert span != "w" or day.weekday() == 0
        assert span != "m" or day.day == 1
        assert span != "y" or (day.month, day.day) == (1, 1)
        step = {"d": 1, "w": 7}.get(span) or (
            (day.replace(year=day.year + 1) - day).days if span == "y" else
            ((day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - day).days)
        out += [day + dt.timedelta(days=i) for i in range(step)]
        day += dt.timedelta(days=step)
    assert day == end
    return out


def test_spans_cover_each_day_once() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        start = FIRST + dt.timedelta(days=rng.randrange(800))
        period = Period(start, start + dt.timedelta(days=rng.randrange(1500)))
        covered = sorted(day for part in spans(period) for day in _days(*part))
        assert covered == [period.start + dt.timedelta(days=i) for i in range(period.days)]
        assert len(spans(period)) <= 9


def _rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(3000):
        day = FIRST + dt.timedelta(days=rng.randrange(120) if n % 3 else rng.randrange(900))
        moment = dt.datetime.combine(day, dt.time(rng.randrange(24)), tzinfo=dt.UTC)
        key, port = f"{rng.randrange(4):064x}", rng.choice((3478, 5349))
        verdict = rng.choice(("open", "open", "blocked", "inconclusive", "throttled"))
        record = {"network": {"link_type": "cellular", "cc": "MA", "asn": 6713,
                              "attribution": "control"},
                  "endpoint": {"check": "stun", "port": port}, "probe": {}}
        rows.append({"id": str(uuid.uuid4()), "key_id": key, "service": "whatsapp",
                     "check_name": "stun", "role": "call", "transport": "udp",
                     "endpoint_host": "stun.example.net", "endpoint_port": port,
                     "verdict": verdict, "blocking": "stun.no_response"
                     if verdict == "blocked" else None, "link_type": "cellular", "cc": "MA",
                     "asn": 6713, "as_org": "IAM", "started_at": moment,
                     "received_at": moment + dt.timedelta(minutes=n % 5),
                     "record": json.dumps(record)})
    return rows


def test_the_matrix_from_spans_equals_the_sum_of_days(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3")
    upgrade(engine)
    rng = random.Random(3)
    rows = _rows(rng)
    for chunk in range(0, len(rows), 700):  # several ingest batches touch the same units
        with engine.begin() as conn:
            rollup.apply(conn, rows[chunk:chunk + 700])
    reader = DashboardReader(engine)

    def matrix(period: Period) -> Any:
        return sorted((c.series.id, sorted((p.key_id, sorted(p.units.items()), p.measurements)
                                           for p in c.probes), sorted(c.methods.items()))
                      for c in reader.cells(period))

    periods = [Period(FIRST, FIRST + dt.timedelta(days=119)),
               Period(FIRST, FIRST + dt.timedelta(days=899)),
               Period(dt.date(2016, 1, 1), dt.date(2017, 12, 31)),
               Period(dt.date(2015, 12, 31), dt.date(2017, 1, 1))] + [
        Period(start, start + dt.timedelta(days=rng.randrange(90)))
        for start in (FIRST + dt.timedelta(days=rng.randrange(100)) for _ in range(25))]
    fast = [matrix(p) for p in periods]
    monkeypatch.setattr(cells_module, "spans",
                        lambda p: [("d", p.start, p.end + dt.timedelta(days=1))])
    assert fast == [matrix(p) for p in periods]
    assert any(fast)
    engine.dispose()


def _daily_from_units(engine: Any, period: Period) -> dict[dt.date, dict[str, int]]:
    """What a timeline must show: live keys' daily units summed, from dash_unit."""
    import sqlalchemy as sa

    from collector.db.schema import dash_unit, probes

    u = dash_unit.c
    out: dict[dt.date, dict[str, int]] = {}
    with engine.connect() as conn:
        revoked = set(conn.execute(sa.select(probes.c.key_id)
                                   .where(probes.c.revoked_at.is_not(None))).scalars())
        for row in conn.execute(sa.select(u.start, u.key_id, u.u_open, u.u_blocked,
                                          u.u_throttled, u.u_inconclusive)
                                .where(u.span == "d", u.start >= period.start,
                                       u.start <= period.end)):
            if row.key_id in revoked:
                continue
            day = out.setdefault(row.start, dict.fromkeys(("open", "blocked", "throttled",
                                                           "inconclusive"), 0))
            for verdict in day:
                day[verdict] += getattr(row, f"u_{verdict}")
    return dict(sorted(out.items()))


def test_timelines_from_series_days_after_a_migration(tmp_path: Path) -> None:
    """Rolled up before migration `query_scale` (which adds the weekly rows and
    the per-series days from the daily ones), then at ingest: the timeline
    equals the live keys' units, a revoked key's taken out."""
    import sqlalchemy as sa
    from alembic import command

    from collector.db.migrate import alembic_config
    from collector.db.schema import probes

    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3")
    command.upgrade(alembic_config(engine), "limits")
    rows = _rows(random.Random(5))
    with engine.begin() as conn:  # as ingest did before: no weekly rows, no series days
        rollup._SERIES_DAY.clear()
        rollup.apply(conn, rows[:2000])
        conn.execute(sa.text("DELETE FROM dash_unit WHERE span = 'w'"))
        conn.execute(sa.text("DELETE FROM dash_method WHERE span = 'w'"))
        conn.execute(sa.insert(probes), [
            {"key_id": f"{n:064x}", "public_key": "x", "registered_at": dt.datetime.now(dt.UTC),
             "revoked_at": dt.datetime.now(dt.UTC) if n == 2 else None} for n in range(4)])
    upgrade(engine)
    with engine.begin() as conn:
        rollup.apply(conn, rows[2000:])
    reader = DashboardReader(engine)
    series = [s.id for s in reader.series()]
    period = Period(FIRST, FIRST + dt.timedelta(days=119))
    expected = _daily_from_units(engine, period)
    assert reader.daily(series, period) == expected and expected
    fast = reader.cells(period)
    assert all(p.key_id != f"{2:064x}" for c in fast for p in c.probes)
    engine.dispose()
