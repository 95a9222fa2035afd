"""The background's change detection (collector/dashboard/changestore.py) is
paced across all API processes: once per `dashboard_refresh_seconds`, never
waiting for another process's run, while pages still bring changes up to date."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.dashboard import changestore
from collector.dashboard.changestore import ChangeStore
from collector.db.engine import make_engine
from collector.db.migrate import upgrade
from collector.db.schema import dash_series, dash_series_day, leases
from collector.limits import Leases
from tests.support.postgres import PostgresServer


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
    assert time.monotonic() - start < changestore.PAGE_WAIT / 2
    assert _dirty(engine) == 1  # left for the process at it
    other.release("other-process")
    ChangeStore(engine).refresh_when_due(1.0)
    assert _dirty(engine) == 0


def test_a_long_refresh_spaces_the_next_out() -> None:
    """Detection takes at most SHARE of one core, whatever the period."""
    assert changestore.next_pause(30.0, 0.2) == 30.0
    assert changestore.page_pause(0.01) == 0.0  # a cheap refresh: pages never behind
    took = 12.0  # a refresh at millions of records
    pause = changestore.next_pause(30.0, took)
    assert took / (took + pause) == pytest.approx(changestore.SHARE)


def _history(engine: sa.Engine, series: int, days: int) -> None:
    """`series` dirty series with `days` days of units each, blocked from the
    middle on: enough history that detecting them all is costly."""
    start = date(2016, 1, 1)
    with engine.begin() as conn:
        for n in range(series):
            series_id = conn.execute(sa.insert(dash_series).values(
                service=f"svc{n}", role="call", cc="MA", operator="AS36925",
                link="cellular").returning(dash_series.c.id)).scalar_one()
            conn.execute(sa.insert(dash_series_day), [
                {"series_id": series_id, "day": start + timedelta(days=d),
                 "u_open": 0 if d > days // 2 else 3, "u_blocked": 3 if d > days // 2 else 0,
                 "u_throttled": 0, "u_inconclusive": 0} for d in range(days)])


def test_pages_after_a_costly_refresh_show_its_changes_without_another(
        engine: sa.Engine) -> None:
    """Page views are public: after a costly refresh they show what it found
    for a while (page_pause) instead of re-running detection each; the
    background still refreshes on its own pace."""
    _history(engine, 200, 365)
    store = ChangeStore(engine)
    start = time.monotonic()
    assert store.refresh() == 200  # a page: one change (blocking started) per series
    took = time.monotonic() - start
    assert took >= changestore.COSTLY, "too little history to be costly on this machine"
    _touch(engine, "svc7")
    assert store.refresh() == 0 and _dirty(engine) == 1  # within the pause: as it was
    store.refresh_when_due(30.0)
    assert _dirty(engine) == 0


def test_pages_do_not_queue_behind_a_lease_held_by_a_dead_process(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed during its refresh keeps the lease until it expires
    (LEASE_SECONDS): one page waits PAGE_WAIT for it, then pages show what is
    stored for BUSY_QUIET instead of each waiting in turn."""
    monkeypatch.setattr(changestore, "PAGE_WAIT", 0.5)
    _touch(engine, "messenger")
    assert Leases(engine).try_acquire("killed-process", changestore.LEASE, "-", 1, 1, 600)
    store = ChangeStore(engine)
    start = time.monotonic()
    assert store.refresh() == 0
    assert 0.5 <= time.monotonic() - start < 2.0
    start = time.monotonic()
    for _ in range(5):
        assert store.refresh() == 0
    assert time.monotonic() - start < 0.5
    assert _dirty(engine) == 1


def test_the_detector_never_waits_for_an_upload(postgres: PostgresServer) -> None:
    """PostgreSQL: a series whose rows an upload holds (it rolls up into them, and
    marks them dirty again) is left for the next refresh, not waited for. The
    detector used to mark its series clean in whatever order PostgreSQL read
    them, while uploads lock them in id order: each could hold what the other
    waited for (a deadlock, an upload answered 500)."""
    engine = make_engine(postgres.create_database("changes"))
    try:
        upgrade(engine)
        for service in ("a", "b", "c"):
            _touch(engine, service)
        with engine.connect() as upload:  # an upload rolling up into series "b"
            upload.begin()
            upload.execute(sa.select(dash_series.c.id).where(dash_series.c.service == "b")
                           .with_for_update())
            refresh = threading.Thread(target=ChangeStore(engine).refresh)
            refresh.start()
            refresh.join(20)
            assert not refresh.is_alive(), "the refresh waits for the upload"
            with engine.connect() as conn:
                dirty = set(conn.execute(sa.select(dash_series.c.service)
                                         .where(dash_series.c.dirty.is_(True))).scalars())
            assert dirty == {"b"}
            upload.rollback()
        # the background loop's refresh: a page's would skip it for a while if the one
        # above counted as costly (a loaded machine: `page_pause`)
        ChangeStore(engine).refresh_when_due(0.0)
        assert _dirty(engine) == 0
    finally:
        engine.dispose()
