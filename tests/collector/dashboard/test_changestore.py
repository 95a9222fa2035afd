"""The background's change detection (collector/dashboard/changestore.py) is
paced across all API processes: once per `dashboard_refresh_seconds`, never
waiting for another process's run, while pages still bring changes up to date."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.dashboard import changestore
from collector.dashboard.changestore import ChangeStore
from collector.db.engine import make_engine
from collector.db.migrate import upgrade
from collector.db.schema import dash_series, leases
from collector.limits import Leases


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/collector.sqlite3")
    upgrade(engine)
    yield engine
    engine.dispose()


def _touch(engine: sa.Engine, service: str) -> None:
    """A series ingest touched (dirty), as ingest leaves it."""
    with engine.begin() as conn:
        found = conn.execute(sa.update(dash_series).where(dash_series.c.service == service)
                             .values(dirty=True)).rowcount
        if not found:
            conn.execute(sa.insert(dash_series).values(service=service, role="call", cc="MA",
                                                       operator="AS36925", link="cellular"))


def _dirty(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            dash_series.c.dirty.is_(True))).scalar_one())


def test_one_background_refresh_per_period_across_processes(engine: sa.Engine) -> None:
    first, second = ChangeStore(engine), ChangeStore(engine)  # two API processes
    _touch(engine, "whatsapp")
    first.refresh_when_due(60.0)
    assert _dirty(engine) == 0
    _touch(engine, "whatsapp")
    second.refresh_when_due(60.0)  # the other process's loop, within the period: skipped
    first.refresh_when_due(60.0)
    assert _dirty(engine) == 1
    with engine.connect() as conn:
        due = conn.execute(sa.select(leases.c.expires_at).where(
            leases.c.id == changestore.DUE)).scalar_one()
    assert 55 < due - time.time() <= 60
    second.refresh()  # a page: brought up to date whatever the pace
    assert _dirty(engine) == 0


def test_a_busy_refresh_is_skipped_not_waited_for(engine: sa.Engine) -> None:
    _touch(engine, "viber")
    other = Leases(engine)
    assert other.try_acquire("other-process", changestore.LEASE, "-", 1, 1, 600)
    start = time.monotonic()
    ChangeStore(engine).refresh_when_due(1.0)
    assert time.monotonic() - start < changestore.LEASE_WAIT / 10
    assert _dirty(engine) == 1  # left for the process at it
    other.release("other-process")
    ChangeStore(engine).refresh_when_due(1.0)
    assert _dirty(engine) == 0


def test_a_long_refresh_spaces_the_next_out() -> None:
    """Detection takes at most SHARE of one core, whatever the period."""
    assert changestore.next_pause(30.0, 0.2) == 30.0
    took = 12.0  # a refresh at millions of records
    pause = changestore.next_pause(30.0, took)
    assert took / (took + pause) == pytest.approx(changestore.SHARE)
