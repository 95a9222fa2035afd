"""The matrix and the timelines, read from the rollups (collector/dashboard/rollup.py).

A cell is one series: (service, path) x (operator, link type). Over a period
each probe key gets one vote, split by the share of its days in each verdict;
the cell's shares are the mean of its probes' shares, so a key that measured
every day weighs no more than one that measured once, and one key cannot
outvote many. Each probe's own reading (its majority over the period) is kept
to show how many agree and flag disagreement.

A period reads whole years and months from the yearly and monthly rollups,
whole weeks at its edges from the weekly ones and the days left from the
daily ones: a year costs about as much as a month.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from collector.dashboard.rollup import LINKS, VERDICTS
from collector.db.schema import dash_method, dash_series, dash_series_day, dash_unit, probes

SUMS = ("u_open", "u_blocked", "u_throttled", "u_inconclusive", "n", "n_signed", "n_upstream")


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Series:
    id: int
    service: str
    role: str
    cc: str
    operator: str
    link: str
    as_org: str | None

    @property
    def asn(self) -> int | None:
        return int(self.operator[2:]) if self.operator.startswith("AS") else None


@dataclass
class ProbeReading:
    key_id: str
    units: dict[str, int]  # days in each verdict
    measurements: int

    @property
    def conclusive(self) -> int:
        return self.units["open"] + self.units["blocked"] + self.units["throttled"]

    @property
    def reading(self) -> str:
        """This probe's word for the period: blocked (or throttled) when at least
        half of its conclusive days were, open otherwise; inconclusive without any."""
        if not self.conclusive:
            return "inconclusive"
        bad = self.units["blocked"] + self.units["throttled"]
        if 2 * bad >= self.conclusive:
            return "throttled" if self.units["throttled"] > self.units["blocked"] else "blocked"
        return "open"


@dataclass
class Cell:
    series: Series
    probes: list[ProbeReading] = field(default_factory=list)
    methods: dict[str, int] = field(default_factory=dict)
    signed: int = 0  # measurements attributed by the record's signed network
    upstream: int = 0  # measurements put in the cellular column by network.upstream

    @property
    def measurements(self) -> int:
        return sum(p.measurements for p in self.probes)

    @property
    def days(self) -> int:
        return sum(sum(p.units.values()) for p in self.probes)

    @property
    def shares(self) -> dict[str, float]:
        """Mean over probes of each probe's share of days per verdict."""
        out = dict.fromkeys(VERDICTS, 0.0)
        counted = [p for p in self.probes if sum(p.units.values())]
        for probe in counted:
            total = sum(probe.units.values())
            for verdict in VERDICTS:
                out[verdict] += probe.units[verdict] / total / len(counted)
        return out

    @property
    def agreement(self) -> dict[str, int]:
        """How many probes read the period each way."""
        out: dict[str, int] = defaultdict(int)
        for probe in self.probes:
            out[probe.reading] += 1
        return dict(out)

    @property
    def disagreement(self) -> bool:
        readings = {p.reading for p in self.probes if p.reading != "inconclusive"}
        return len(readings) > 1

    @property
    def verdict(self) -> str:
        """The probes' majority reading; `mixed` on a tie between conclusive readings."""
        counts = {v: n for v, n in self.agreement.items() if v != "inconclusive"}
        if not counts:
            return "inconclusive"
        ranked = sorted(counts.items(), key=lambda item: -item[1])
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return "mixed"
        return ranked[0][0]

    @property
    def attribution(self) -> str:
        """signed, lookup (the upload address) or mixed."""
        if self.signed == self.measurements:
            return "signed"
        return "lookup" if self.signed == 0 else "mixed"


def spans(period: Period) -> list[tuple[str, date, date]]:
    """(span, first start, end) triples whose rows cover `period` exactly, each
    day once: whole years, whole months around them, then whole weeks (Monday
    to Sunday) inside the partial months at its edges, then the days left
    over. So a period reads at most about 50 rows per probe and series,
    whatever its length, and a year or two about 25."""
    first_month = period.start if period.start.day == 1 else _next_month(period.start)
    end_month = _next_month(period.end) if _is_month_end(period.end) else \
        period.end.replace(day=1)
    after = period.end + timedelta(days=1)
    if first_month >= end_month:
        return _weeks_and_days(period.start, after)
    first_year = first_month if first_month.month == 1 else \
        date(first_month.year + 1, 1, 1)
    end_year = date(end_month.year, 1, 1)
    if first_year >= end_year:
        middle = [("m", first_month, end_month)]
    else:
        middle = [(span, a, b) for span, a, b in (
            ("m", first_month, first_year), ("y", first_year, end_year),
            ("m", end_year, end_month)) if a < b]
    return [*middle, *_weeks_and_days(period.start, first_month),
            *_weeks_and_days(end_month, after)]


def _weeks_and_days(start: date, end: date) -> list[tuple[str, date, date]]:
    """[start, end) as whole weeks and the days around them."""
    if start >= end:
        return []
    first_week = start + timedelta(days=(7 - start.weekday()) % 7)
    end_week = end - timedelta(days=end.weekday())
    if first_week >= end_week:
        return [("d", start, end)]
    return [(span, a, b) for span, a, b in (("d", start, first_week), ("w", first_week, end_week),
                                            ("d", end_week, end)) if a < b]


def span_rows(table: sa.Table, period: Period, columns: list[str], *where: Any) -> Any:
    """`columns` of the rows of `table` (span, start) that cover `period`
    exactly and meet `where`: one range of the key per span, read one after
    the other. (As one OR of ranges, SQLite gathers every row's key first to
    drop those two ranges share, which cost as much as the read itself on the
    tables it stores in key order; the ranges never overlap.)"""
    c = table.c
    parts = [sa.select(*(c[name] for name in columns))
             .where(c.span == span, c.start >= a, c.start < b, *where)
             for span, a, b in spans(period)]
    return sa.union_all(*parts).subquery()


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _is_month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def _live(table: sa.Table) -> Any:
    """Revoked keys' rollups are left out, as their records are."""
    return table.c.key_id.not_in(sa.select(probes.c.key_id).where(probes.c.revoked_at.is_not(None)))


@dataclass(frozen=True)
class Where:
    """Which series: every filter optional."""

    cc: str | None = None
    service: str | None = None
    role: str | None = None
    operator: str | None = None
    link: str | None = None

    def clauses(self) -> list[Any]:
        c = dash_series.c
        out = []
        for value, column in ((self.cc, c.cc), (self.service, c.service), (self.role, c.role),
                              (self.operator, c.operator), (self.link, c.link)):
            if value is not None:
                out.append(column == value)
        return out


class DashboardReader:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def series(self, where: Where = Where()) -> list[Series]:
        c = dash_series.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.id, c.service, c.role, c.cc, c.operator, c.link,
                                          c.as_org).where(*where.clauses())).all()
        return [Series(*row) for row in rows]

    def data_range(self) -> tuple[date, date] | None:
        """First and last day with any unit."""
        u = dash_unit.c
        with self.engine.connect() as conn:
            low, high = conn.execute(sa.select(sa.func.min(u.start), sa.func.max(u.start))
                                     .where(u.span == "m")).one()
            if low is None:
                return None
            first = conn.execute(sa.select(sa.func.min(u.start)).where(
                u.span == "d", u.start >= low)).scalar_one()
            last = conn.execute(sa.select(sa.func.max(u.start)).where(
                u.span == "d", u.start >= high)).scalar_one()
        return first, last

    def cells(self, period: Period, where: Where = Where()) -> list[Cell]:
        series = {s.id: s for s in self.series(where)}
        if not series:
            return []
        cells = {sid: Cell(s) for sid, s in series.items()}
        filtered = bool(where.clauses())

        def chosen(table: sa.Table) -> list[Any]:
            """`table`'s rows of the series asked for (all when unfiltered)."""
            return [table.c.series_id.in_(list(series))] if filtered else []

        with self.engine.connect() as conn:
            u = span_rows(dash_unit, period, ["series_id", "key_id", *SUMS],
                          _live(dash_unit), *chosen(dash_unit)).c
            query = (sa.select(u.series_id, u.key_id,
                               *(sa.func.sum(u[name]).label(name) for name in SUMS))
                     .group_by(u.series_id, u.key_id))
            for row in conn.execute(query):
                cell = cells.get(row.series_id)
                if cell is None:
                    continue
                units = {v: int(row[i + 2]) for i, v in enumerate(VERDICTS)}
                if not any(units.values()):
                    continue
                cell.probes.append(ProbeReading(row.key_id, units, int(row.n)))
                cell.signed += int(row.n_signed)
                cell.upstream += int(row.n_upstream)
            m = span_rows(dash_method, period, ["series_id", "blocking", "n"],
                          _live(dash_method), *chosen(dash_method)).c
            query = sa.select(m.series_id, m.blocking, sa.func.sum(m.n)).group_by(
                m.series_id, m.blocking)
            for series_id, blocking, n in conn.execute(query):
                if series_id in cells:
                    cells[series_id].methods[blocking] = int(n)
        return [cell for cell in cells.values() if cell.probes]

    def daily(self, series_ids: list[int], period: Period) -> dict[date, dict[str, int]]:
        """Units (probe-days) per verdict for each day of `period` that has any,
        summed over `series_ids`."""
        with self.engine.connect() as conn:
            return series_day_counts(conn, series_ids, period.start, period.end)


def series_day_counts(conn: sa.Connection, series_ids: list[int], start: date | None = None,
                      end: date | None = None) -> dict[date, dict[str, int]]:
    """Units (probe-days) per verdict for each day (from `start` to `end`, both
    optional) that has any, summed over `series_ids`: from the per-series days
    kept at ingest (one row a day, whatever the number of probes), less revoked
    keys' units."""
    return _day_counts(conn, series_ids, start, end, by_series=False).get(None, {})


def day_counts_by_series(conn: sa.Connection, series_ids: list[int]
                         ) -> dict[int, dict[date, dict[str, int]]]:
    """The same, each series apart, in one read (change detection reads a batch
    of series at once: one query per series cost more than the detection)."""
    found = _day_counts(conn, series_ids, None, None, by_series=True)
    return {int(series_id): days for series_id, days in found.items() if series_id is not None}


def _day_counts(conn: sa.Connection, series_ids: list[int], start: date | None,
                end: date | None, *, by_series: bool
                ) -> dict[int | None, dict[date, dict[str, int]]]:
    if not series_ids:
        return {}
    d, u = dash_series_day.c, dash_unit.c
    d_keys, u_keys = ([d.series_id], [u.series_id]) if by_series else ([], [])
    days = sa.select(*d_keys, d.day, *(sa.func.sum(d[f"u_{v}"]) for v in VERDICTS)).where(
        d.series_id.in_(series_ids)).group_by(*d_keys, d.day)
    daily = u.span == "d"
    if conn.dialect.name == "sqlite":
        # SQLite keeps no statistics: told nothing, it reads every daily unit through
        # the primary key (span first); told that most units are daily, it reads
        # the revoked keys' alone, through dash_unit_series
        daily = sa.func.likely(daily)
    units = sa.select(*u_keys, u.start, *(sa.func.sum(u[f"u_{v}"]) for v in VERDICTS)).where(
        daily, u.series_id.in_(series_ids)).group_by(*u_keys, u.start)
    if start is not None:
        days, units = days.where(d.day >= start), units.where(u.start >= start)
    if end is not None:
        days, units = days.where(d.day <= end), units.where(u.start <= end)

    def split(row: sa.Row[Any]) -> tuple[int | None, date, list[int]]:
        series, rest = (row[0], row[1:]) if by_series else (None, row)
        return series, _as_day(rest[0]), [int(n) for n in rest[1:]]

    out: dict[int | None, dict[date, dict[str, int]]] = {}
    for row in conn.execute(days):
        series, day, counts = split(row)
        out.setdefault(series, {})[day] = dict(zip(VERDICTS, counts, strict=True))
    revoked = list(conn.execute(sa.select(probes.c.key_id)
                                .where(probes.c.revoked_at.is_not(None))).scalars())
    if revoked:
        for row in conn.execute(units.where(u.key_id.in_(revoked))):
            series, day, counts = split(row)
            for verdict, count in zip(VERDICTS, counts, strict=True):
                out[series][day][verdict] -= count
    return {series: {day: counts for day, counts in sorted(days_.items())
                     if any(counts.values())} for series, days_ in out.items()}


def _as_day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def column_order(cells: list[Cell]) -> list[tuple[str, str, str, str | None]]:
    """The matrix's columns: (cc, operator, link, as_org), operators by
    country and number, link types in LINKS order, unknown last."""
    seen: dict[tuple[str, str, str], str | None] = {}
    for cell in cells:
        s = cell.series
        key = (s.cc, s.operator, s.link)
        if key not in seen or (s.as_org and not seen[key]):
            seen[key] = s.as_org
    rank = {link: i for i, link in enumerate(LINKS)}

    def order(key: tuple[str, str, str]) -> tuple[Any, ...]:
        cc, operator, link = key
        number = int(operator[2:]) if operator.startswith("AS") else 1 << 40
        return (cc == "", cc, operator == "", number, operator, rank.get(link, 99), link)

    return [(*key, seen[key]) for key in sorted(seen, key=order)]
