"""The fleet page's coverage (collector/dashboard/fleet.py): each network's
last day with data per link is the newest day of any probe's unit there."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import sqlalchemy as sa

from collector.dashboard import rollup
from collector.dashboard.fleet import fleet
from collector.db.engine import make_engine
from collector.db.migrate import upgrade
from collector.db.schema import dash_series, dash_unit
from tests.collector.dashboard.test_spans import _rows
from tests.collector.db.rollups import roll_up


def test_the_last_day_of_each_link_is_its_newest_unit(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3")
    upgrade(engine)
    rows = _rows(random.Random(9))
    for n, row in enumerate(rows):  # three links, each with its own newest day
        link = ("cellular", "wifi", "adsl")[n % 3]
        record = json.loads(row["record"])
        record["network"]["link_type"] = link
        row.update(link_type=link, record=json.dumps(record))
    roll_up(engine, rows)
    u, s = dash_unit.c, dash_series.c
    with engine.connect() as conn:
        expected = dict(conn.execute(
            sa.select(s.link, sa.func.max(u.start))
            .select_from(dash_unit.join(dash_series, s.id == u.series_id))
            .where(u.span == "d").group_by(s.link)).all())
    _, coverage = fleet(engine, dt.date(2017, 1, 1))
    [network] = coverage
    assert (network.cc, network.operator) == ("MA", "AS6713")
    assert network.last_day == {link: rollup._as_date(day) for link, day in expected.items()}
    assert len(set(network.last_day.values())) > 1  # the links differ
    engine.dispose()
