"""Rollups maintained at ingest: what the matrix, the timelines and the change
detector read instead of the measurements table.

The unit of evidence is one probe key, one day (UTC), one series (service,
path, operator, link type): a key that measures a hundred times a day still
counts once that day, so it can neither outvote many probes nor flood a cell.
A unit's verdict comes in two steps: each endpoint's verdict for the day is
the majority of its conclusive measurements (a tie is inconclusive, so one
flaky attempt among several does not flip it); the unit's verdict is then the
path's verdict over its endpoints, the rule the probe's results table uses
(`probe.core.summary.role_verdict`: blocked if any endpoint is).

Records dated more than `AHEAD_TOLERANCE` after they reached the collector
(a probe's clock, or a key, running ahead) are stored but not rolled up.

In the ingest path, `facts_of(rows)` reads the records before the write lock
and `apply_facts(conn, facts)` rolls up those inserted, inside the ingest
transaction. `rebuild_on(conn)` recomputes
everything from the measurements table (migration, `voipwatch-collector
dashboard rebuild`); `forget_key(conn, key_id)` takes a redacted key's share out.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.db.locks import lock_series
from collector.db.schema import (
    dash_endpoint_day,
    dash_key_version,
    dash_method,
    dash_series,
    dash_series_day,
    dash_unit,
    measurements,
)
from probe.core.summary import role_verdict

AHEAD_TOLERANCE = timedelta(minutes=2)
VERDICTS = ("open", "blocked", "throttled", "inconclusive")
LINKS = ("cellular", "wifi", "adsl", "ethernet")  # the matrix's columns, in order; then unknown


@dataclass(frozen=True)
class Dims:
    """Where one record goes."""

    service: str
    role: str
    cc: str  # '' unknown
    operator: str  # 'AS6713', 'org:NAME' (a lookup without a number) or '' unknown
    as_org: str | None
    link: str
    signed: bool  # country/ASN from the record's signed network, not the upload address
    via_upstream: bool  # link from network.upstream (a hotspot's cellular uplink)
    endpoint: str
    version: str

    @property
    def series(self) -> tuple[str, str, str, str, str]:
        return (self.service, self.role, self.cc, self.operator, self.link)


def operator_of(asn: int | None, as_org: str | None) -> str:
    if asn is not None:
        return f"AS{asn}"
    return f"org:{as_org[:70]}" if as_org else ""


def dims_of(row: dict[str, Any] | Any, record: dict[str, Any]) -> Dims:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    network = record.get("network") or {}
    endpoint = record.get("endpoint") or {}
    if network.get("attribution") in ("control", "local") and (
            network.get("asn") is not None or network.get("cc")):
        cc, asn, org, signed = network.get("cc") or "", network.get("asn"), \
            network.get("as_org"), True
    else:
        cc, asn, org, signed = get("cc") or "", get("asn"), get("as_org"), False
    link = str(network.get("link_type") or get("link_type") or "unknown")
    via_upstream = network.get("upstream") == "cellular" and link != "cellular"
    if via_upstream:
        link = "cellular"
    variant = endpoint.get("label") or endpoint.get("policy") or endpoint.get("profile") or ""
    ident = f"{get('check_name')}|{get('endpoint_host')}|{get('endpoint_port')}|" \
            f"{get('transport')}|{variant}"
    version = str((record.get("probe") or {}).get("software_version") or "")[:64]
    return Dims(get("service"), get("role"), cc.upper()[:2], operator_of(asn, org),
                org[:255] if isinstance(org, str) else None, link, signed, via_upstream,
                hashlib.sha1(ident.encode()).hexdigest()[:16], version)


def endpoint_verdict(counts: Iterable[int]) -> str:
    """An endpoint's verdict for a day: the majority of its conclusive
    measurements (open, blocked, throttled); a tie or none: inconclusive."""
    n_open, n_blocked, n_throttled, _ = counts
    ranked = sorted(((n_blocked, "blocked"), (n_throttled, "throttled"), (n_open, "open")),
                    reverse=True)
    if ranked[0][0] == 0 or ranked[0][0] == ranked[1][0]:
        return "inconclusive"
    return ranked[0][1]


def unit_verdict(endpoints: Iterable[Iterable[int]]) -> str:
    return role_verdict(endpoint_verdict(counts) for counts in endpoints)


def month_of(day: date) -> date:
    return day.replace(day=1)


def week_of(day: date) -> date:
    """The Monday that starts `day`'s week (ISO weeks)."""
    return day - timedelta(days=day.weekday())


def spans_of(day: date) -> tuple[tuple[str, date], ...]:
    """The rollup rows a day counts in: itself, its week, its month, its year."""
    return (("d", day), ("w", week_of(day)), ("m", month_of(day)),
            ("y", day.replace(month=1, day=1)))


class _Writer:
    """Upserts and look-ups for one dialect, as plain SQL through the driver's
    executemany: SQLAlchemy's per-row parameter processing cost more than the
    statements themselves. Values are given in the column's storage form."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.ph = "%s" if self.postgres else "?"

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self.postgres else sqlite.insert(table)

    def day(self, value: date) -> Any:
        return value if self.postgres else value.isoformat()

    def moment(self, value: datetime) -> Any:
        """UtcDateTime's storage form: timestamptz, or SQLite's naive UTC text."""
        if self.postgres:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def add(self, table: sa.Table, columns: list[str], rows: list[tuple[Any, ...]],
            keys: list[str], adds: list[str], sets: tuple[str, ...] = (),
            maxes: tuple[str, ...] = (), mins: tuple[str, ...] = ()) -> None:
        """Insert `rows` (tuples in `columns` order), or, where the key exists,
        add their `adds`, replace their `sets`, keep the max of `maxes` and the
        min of `mins`."""
        if not rows:
            return
        # every transaction upserts in key order: two concurrent ingests touching
        # the same rows in opposite orders deadlock on PostgreSQL (measured with
        # the transparency log off, the log's lock no longer serialising them)
        positions = [columns.index(key) for key in keys]
        rows = sorted(rows, key=lambda row: [row[i] for i in positions])
        name = table.name
        changes = [f"{c} = {name}.{c} + excluded.{c}" for c in adds]
        changes += [f"{c} = excluded.{c}" for c in sets]
        changes += [f"{c} = CASE WHEN excluded.{c} > {name}.{c} THEN excluded.{c} "
                    f"ELSE {name}.{c} END" for c in maxes]
        changes += [f"{c} = CASE WHEN excluded.{c} < {name}.{c} THEN excluded.{c} "
                    f"ELSE {name}.{c} END" for c in mins]
        sql = (f"INSERT INTO {name} ({', '.join(columns)}) VALUES "
               f"({', '.join([self.ph] * len(columns))}) ON CONFLICT ({', '.join(keys)}) "
               f"DO UPDATE SET {', '.join(changes)}")
        self.conn.exec_driver_sql(sql, rows)

    def lookup(self, sql: str, keys: list[tuple[Any, ...]], casts: tuple[str, ...]
               ) -> list[tuple[Any, ...]]:
        """Rows of `sql` (a SELECT whose WHERE compares its key columns with
        `{k0}`, `{k1}`...) for every key: one statement per key on SQLite, one
        join against unnested arrays on PostgreSQL."""
        if not keys:
            return []
        if self.postgres:
            arrays = ", ".join(f"%s::{cast}[]" for cast in casts)
            names = ", ".join(f"k{i}" for i in range(len(casts)))
            joined = sql.format(**{f"k{i}": f"t.k{i}" for i in range(len(casts))})
            joined = joined.replace(" WHERE ", f" JOIN unnest({arrays}) AS t({names}) ON ", 1)
            columns = tuple(list(column) for column in zip(*keys, strict=True))
            return [tuple(r) for r in self.conn.exec_driver_sql(joined, columns)]
        single = sql.format(**{f"k{i}": "?" for i in range(len(casts))})
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        out: list[tuple[Any, ...]] = []
        try:
            for key in keys:
                out.extend(cursor.execute(single, key).fetchall())
        finally:
            cursor.close()
        return out


def _series_ids(conn: sa.Connection, writer: _Writer,
                wanted: dict[tuple[str, str, str, str, str], str | None]) -> dict[Any, int]:
    c = dash_series.c
    services = sorted({key[0] for key in wanted})
    found: dict[Any, int] = {}

    def load() -> None:
        for row in conn.execute(sa.select(c.id, c.service, c.role, c.cc, c.operator, c.link)
                                .where(c.service.in_(services))):
            found[(row.service, row.role, row.cc, row.operator, row.link)] = row.id

    load()
    missing = sorted(key for key in wanted if key not in found)  # key order: see _Writer.add
    if missing:
        conn.execute(writer.insert(dash_series).on_conflict_do_nothing(), [
            {"service": k[0], "role": k[1], "cc": k[2], "operator": k[3], "link": k[4],
             "as_org": wanted[k], "dirty": True} for k in missing])
        load()
    return found


@dataclass(frozen=True, slots=True)
class Fact:
    """What one stored row adds to the rollups: worked out from its record
    before the ingest takes the write lock (the record's parse and the
    dimensions are most of the rollups' Python work)."""

    dims: Dims
    key_id: str
    started: datetime
    received: datetime
    verdict: str
    blocking: str | None


def facts_of(rows: list[dict[str, Any]] | list[Any]) -> list[Fact]:
    """One fact per row (dicts or result rows carrying the measurements columns)."""
    out = []
    for row in rows:
        get = row.get if isinstance(row, dict) else lambda name, r=row: getattr(r, name)
        out.append(Fact(dims_of(row, orjson.loads(get("record"))), get("key_id"),
                        get("started_at"), get("received_at"), get("verdict"),
                        get("blocking")))
    return out


def apply(conn: sa.Connection, rows: list[dict[str, Any]] | list[Any]) -> int:
    """Roll up freshly stored measurement rows (dicts or result rows carrying
    the measurements columns); the number rolled up."""
    return apply_facts(conn, facts_of(rows))


def apply_facts(conn: sa.Connection, facts: list[Fact]) -> int:
    """Roll up the facts of freshly stored rows; the number rolled up."""
    if not facts:
        return 0
    writer = _Writer(conn)
    endpoint_days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    units: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])  # n, signed, up
    methods: dict[tuple[Any, ...], int] = defaultdict(int)
    versions: dict[tuple[str, str], list[Any]] = {}
    series_names: dict[tuple[str, str, str, str, str], str | None] = {}
    pending: list[Fact] = []
    for fact in facts:
        started = fact.started
        version = versions.setdefault((fact.key_id, fact.dims.version),
                                      [started, started, 0, 0])
        version[0], version[1] = min(version[0], started), max(version[1], started)
        if started > fact.received + AHEAD_TOLERANCE:
            version[3] += 1
            continue
        version[2] += 1
        series_names.setdefault(fact.dims.series, fact.dims.as_org)
        pending.append(fact)
    ids = _series_ids(conn, writer, series_names) if series_names else {}
    # a unit's verdict is judged from its endpoints' counts read here: two
    # transactions rolling up the same series at once would each judge from the
    # other's old counts. Its series' rows are locked first (collector/db/locks.py)
    lock_series(conn, {ids[fact.dims.series] for fact in pending})
    for fact in pending:
        dims = fact.dims
        series_id, key_id, day = ids[dims.series], fact.key_id, fact.started.date()
        endpoint_days[(series_id, day, key_id, dims.endpoint)][VERDICTS.index(fact.verdict)] += 1
        unit = units[(series_id, day, key_id)]
        unit[0] += 1
        unit[1] += dims.signed
        unit[2] += dims.via_upstream
        if fact.blocking:
            methods[(series_id, day, key_id, fact.blocking)] += 1
    writer.add(dash_endpoint_day,
               ["series_id", "day", "key_id", "endpoint", "n_open", "n_blocked", "n_throttled",
                "n_inconclusive"],
               [(k[0], writer.day(k[1]), k[2], k[3], *v) for k, v in endpoint_days.items()],
               ["series_id", "day", "key_id", "endpoint"],
               ["n_open", "n_blocked", "n_throttled", "n_inconclusive"])
    _units(writer, units)
    method_rows: dict[tuple[Any, ...], int] = defaultdict(int)
    for (series_id, day, key_id, blocking), n in methods.items():
        for span, start in spans_of(day):
            method_rows[(span, writer.day(start), series_id, key_id, blocking)] += n
    writer.add(dash_method, ["span", "start", "series_id", "key_id", "blocking", "n"],
               [(*k, n) for k, n in method_rows.items()],
               ["span", "start", "series_id", "key_id", "blocking"], ["n"])
    writer.add(dash_key_version, ["key_id", "version", "first_at", "last_at", "n", "n_ahead"],
               [(k[0], k[1], writer.moment(v[0]), writer.moment(v[1]), v[2], v[3])
                for k, v in versions.items()],
               ["key_id", "version"], ["n", "n_ahead"], maxes=("last_at",), mins=("first_at",))
    touched = sorted({k[0] for k in units})
    if touched:
        conn.execute(sa.update(dash_series).where(dash_series.c.id.in_(touched))
                     .values(dirty=True))
    return len(pending)


def _units(writer: _Writer, units: dict[tuple[Any, ...], list[int]]) -> None:
    """Recompute the verdict of every touched unit from its endpoints' day
    counts; store it (span d) and move its week's, month's and year's totals
    (spans w, m, y) by the change."""
    if not units:
        return
    keys = [(series_id, writer.day(day), key_id) for series_id, day, key_id in units]
    casts = ("bigint", "date", "text")
    endpoints: dict[tuple[Any, ...], list[tuple[int, int, int, int]]] = defaultdict(list)
    for row in writer.lookup(
            "SELECT e.series_id, e.day, e.key_id, e.n_open, e.n_blocked, e.n_throttled, "
            "e.n_inconclusive FROM dash_endpoint_day e WHERE e.series_id = {k0} "
            "AND e.day = {k1} AND e.key_id = {k2}", keys, casts):
        endpoints[(row[0], writer.day(_as_date(row[1])), row[2])].append(row[3:7])
    old: dict[tuple[Any, ...], str | None] = {}
    for row in writer.lookup(
            "SELECT u.series_id, u.start, u.key_id, u.u_open, u.u_blocked, u.u_throttled, "
            "u.u_inconclusive FROM dash_unit u WHERE u.span = 'd' AND u.series_id = {k0} "
            "AND u.start = {k1} AND u.key_id = {k2}", keys, casts):
        flags = tuple(row[3:7])
        old[(row[0], writer.day(_as_date(row[1])), row[2])] = \
            VERDICTS[flags.index(1)] if 1 in flags else None
    day_rows: list[tuple[Any, ...]] = []
    month_rows: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 7)
    series_days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 4)
    for (series_id, day, key_id), key in zip(units, keys, strict=True):
        n, signed, upstream = units[(series_id, day, key_id)]
        new = unit_verdict(endpoints[key])
        before = old.get(key)
        day_rows.append(("d", key[1], series_id, key_id,
                         *(int(v == new) for v in VERDICTS), n, signed, upstream))
        series_day = series_days[(series_id, key[1])]
        for i, verdict in enumerate(VERDICTS):
            series_day[i] += int(verdict == new) - int(verdict == before)
        for span, start in spans_of(day)[1:]:
            month = month_rows[(span, writer.day(start), series_id, key_id)]
            for i, verdict in enumerate(VERDICTS):
                month[i] += int(verdict == new) - int(verdict == before)
            month[4] += n
            month[5] += signed
            month[6] += upstream
    columns = ["span", "start", "series_id", "key_id", *(f"u_{v}" for v in VERDICTS), "n",
               "n_signed", "n_upstream"]
    keys_of = ["span", "start", "series_id", "key_id"]
    counters = ["n", "n_signed", "n_upstream"]
    writer.add(dash_unit, columns, day_rows, keys_of, counters,
               sets=tuple(f"u_{v}" for v in VERDICTS))
    writer.add(dash_unit, columns, [(*k, *v) for k, v in month_rows.items()], keys_of,
               [*(f"u_{v}" for v in VERDICTS), *counters])
    if _has_series_day(writer.conn):
        writer.add(dash_series_day, ["series_id", "day", *(f"u_{v}" for v in VERDICTS)],
                   [(*k, *v) for k, v in series_days.items()], ["series_id", "day"],
                   [f"u_{v}" for v in VERDICTS])


def forget_key(conn: sa.Connection, key_id: str) -> int:
    """Take a key's share out of the rollups, in the caller's transaction (its
    records were redacted: collector/redaction.py): its units, endpoint days,
    methods and versions go, each day's totals lose its units, and the series
    it counted in go back to the change detector. The number of series."""
    writer = _Writer(conn)
    u = dash_unit.c
    days = conn.execute(sa.select(u.series_id, u.start, *(u[f"u_{v}"] for v in VERDICTS))
                        .where(u.span == "d", u.key_id == key_id)).all()
    touched = sorted({row.series_id for row in days})
    lock_series(conn, touched)
    series_days = _has_series_day(conn)
    if days and series_days:
        writer.add(dash_series_day, ["series_id", "day", *(f"u_{v}" for v in VERDICTS)],
                   [(row.series_id, writer.day(_as_date(row.start)), *(-n for n in row[2:]))
                    for row in days], ["series_id", "day"], [f"u_{v}" for v in VERDICTS])
    for table in (dash_endpoint_day, dash_unit, dash_method, dash_key_version):
        conn.execute(sa.delete(table).where(table.c.key_id == key_id))
    d = dash_series_day.c
    for start in range(0, len(touched), 500):
        ids = touched[start:start + 500]
        if series_days:  # a day no other key counted in: no row, as a rebuild leaves it
            conn.execute(sa.delete(dash_series_day).where(
                d.series_id.in_(ids), *(d[f"u_{v}"] == 0 for v in VERDICTS)))
        conn.execute(sa.update(dash_series).where(dash_series.c.id.in_(ids)).values(dirty=True))
    return len(touched)


_SERIES_DAY: set[str] = set()  # databases known to have dash_series_day


def _has_series_day(conn: sa.Connection) -> bool:
    """False only while migrating from before migration `query_scale`: the
    `dashboard` migration rolls up with this code before that table exists."""
    url = conn.engine.url.render_as_string()
    if url not in _SERIES_DAY:
        if not sa.inspect(conn).has_table("dash_series_day"):
            return False
        _SERIES_DAY.add(url)
    return True


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


ROLLUP_COLUMNS = (measurements.c.seq, measurements.c.key_id, measurements.c.service,
                  measurements.c.check_name, measurements.c.role, measurements.c.transport,
                  measurements.c.endpoint_host, measurements.c.endpoint_port,
                  measurements.c.verdict, measurements.c.blocking, measurements.c.link_type,
                  measurements.c.cc, measurements.c.asn, measurements.c.as_org,
                  measurements.c.started_at, measurements.c.received_at, measurements.c.record)


def rebuild_on(conn: sa.Connection, chunk: int = 5000,
               progress: Callable[[int], None] | None = None) -> int:
    """Empty the rollups and roll up every stored measurement again, in seq
    order, in the caller's transaction; `progress` is told the number read so
    far after each chunk."""
    lock_series(conn)  # uploads rolling up meanwhile finish first, or wait
    for table in (dash_endpoint_day, dash_unit, dash_method, dash_key_version,
                  *((dash_series_day,) if _has_series_day(conn) else ())):
        conn.execute(sa.delete(table))
    conn.execute(sa.update(dash_series).values(dirty=True))
    after, total, read = 0, 0, 0
    while True:
        rows = conn.execute(sa.select(*ROLLUP_COLUMNS).where(measurements.c.seq > after)
                            .order_by(measurements.c.seq).limit(chunk)).all()
        if not rows:
            return total
        total += apply(conn, rows)
        read += len(rows)
        after = rows[-1].seq
        if progress is not None:
            progress(read)
