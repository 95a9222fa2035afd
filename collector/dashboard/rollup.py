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

`apply(conn, rows)` is the one call in the ingest path, inside the ingest
transaction, with the rows just inserted. `rebuild_on(conn)` recomputes
everything from the measurements table (migration, `voipwatch-collector
dashboard rebuild`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.db.schema import (
    dash_endpoint_day,
    dash_key_version,
    dash_method,
    dash_series,
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


class _Writer:
    """Upserts for one dialect."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self.postgres else sqlite.insert(table)

    def add(self, table: sa.Table, rows: list[dict[str, Any]], keys: list[str],
            adds: list[str], maxes: tuple[str, ...] = (), mins: tuple[str, ...] = ()) -> None:
        """Insert `rows`, or add their `adds` columns to the existing rows."""
        if not rows:
            return
        statement = self.insert(table)
        excluded = statement.excluded
        changes: dict[str, Any] = {name: table.c[name] + excluded[name] for name in adds}
        for name in maxes:
            changes[name] = sa.case((excluded[name] > table.c[name], excluded[name]),
                                    else_=table.c[name])
        for name in mins:
            changes[name] = sa.case((excluded[name] < table.c[name], excluded[name]),
                                    else_=table.c[name])
        self.conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes),
                          rows)


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
    missing = [key for key in wanted if key not in found]
    if missing:
        conn.execute(writer.insert(dash_series).on_conflict_do_nothing(), [
            {"service": k[0], "role": k[1], "cc": k[2], "operator": k[3], "link": k[4],
             "as_org": wanted[k], "dirty": True} for k in missing])
        load()
    return found


def apply(conn: sa.Connection, rows: list[dict[str, Any]] | list[Any]) -> int:
    """Roll up freshly stored measurement rows (dicts or result rows carrying
    the measurements columns); the number rolled up."""
    if not rows:
        return 0
    writer = _Writer(conn)
    endpoint_days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    units: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])  # n, signed, up
    methods: dict[tuple[Any, ...], int] = defaultdict(int)
    versions: dict[tuple[str, str], list[Any]] = {}
    series_names: dict[tuple[str, str, str, str, str], str | None] = {}
    pending: list[tuple[Dims, Any]] = []
    for row in rows:
        get = row.get if isinstance(row, dict) else lambda name, r=row: getattr(r, name)
        record = orjson.loads(get("record"))
        dims = dims_of(row, record)
        started: datetime = get("started_at")
        received: datetime = get("received_at")
        version = versions.setdefault((get("key_id"), dims.version),
                                      [started, started, 0, 0])
        version[0], version[1] = min(version[0], started), max(version[1], started)
        if started > received + AHEAD_TOLERANCE:
            version[3] += 1
            continue
        version[2] += 1
        series_names.setdefault(dims.series, dims.as_org)
        pending.append((dims, row))
    ids = _series_ids(conn, writer, series_names) if series_names else {}
    for dims, row in pending:
        get = row.get if isinstance(row, dict) else lambda name, r=row: getattr(r, name)
        series_id, key_id, day = ids[dims.series], get("key_id"), get("started_at").date()
        verdict = get("verdict")
        endpoint_days[(series_id, day, key_id, dims.endpoint)][VERDICTS.index(verdict)] += 1
        unit = units[(series_id, day, key_id)]
        unit[0] += 1
        unit[1] += dims.signed
        unit[2] += dims.via_upstream
        if get("blocking"):
            methods[(series_id, day, key_id, get("blocking"))] += 1
    writer.add(dash_endpoint_day, [
        {"series_id": k[0], "day": k[1], "key_id": k[2], "endpoint": k[3], "n_open": v[0],
         "n_blocked": v[1], "n_throttled": v[2], "n_inconclusive": v[3]}
        for k, v in endpoint_days.items()],
        ["series_id", "day", "key_id", "endpoint"],
        ["n_open", "n_blocked", "n_throttled", "n_inconclusive"])
    _units(conn, writer, units)
    method_rows = []
    for (series_id, day, key_id, blocking), n in methods.items():
        for span, start in (("d", day), ("m", month_of(day))):
            method_rows.append({"span": span, "start": start, "series_id": series_id,
                                "key_id": key_id, "blocking": blocking, "n": n})
    writer.add(dash_method, _merged(method_rows, ("n",)),
               ["span", "start", "series_id", "key_id", "blocking"], ["n"])
    writer.add(dash_key_version, [
        {"key_id": k[0], "version": k[1], "first_at": v[0], "last_at": v[1], "n": v[2],
         "n_ahead": v[3]} for k, v in versions.items()],
        ["key_id", "version"], ["n", "n_ahead"], maxes=("last_at",), mins=("first_at",))
    touched = sorted({k[0] for k in units})
    if touched:
        conn.execute(sa.update(dash_series).where(dash_series.c.id.in_(touched))
                     .values(dirty=True))
    return len(pending)


def _merged(rows: list[dict[str, Any]], adds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows with the same key summed (an upsert statement may not touch a row twice)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(v for k, v in row.items() if k not in adds)
        if key in out:
            for name in adds:
                out[key][name] += row[name]
        else:
            out[key] = dict(row)
    return list(out.values())


def _units(conn: sa.Connection, writer: _Writer,
           units: dict[tuple[Any, ...], list[int]]) -> None:
    """Recompute the verdict of every touched unit from its endpoints' day
    counts; store it (span d) and move the month's totals (span m) by the change."""
    if not units:
        return
    e, u = dash_endpoint_day.c, dash_unit.c
    keys = list(units)
    endpoints: dict[tuple[Any, ...], list[tuple[int, int, int, int]]] = defaultdict(list)
    old: dict[tuple[Any, ...], str | None] = {}
    for chunk in _chunks(keys, 300):
        for row in conn.execute(sa.select(e.series_id, e.day, e.key_id, e.n_open, e.n_blocked,
                                          e.n_throttled, e.n_inconclusive)
                                .where(sa.tuple_(e.series_id, e.day, e.key_id).in_(chunk))):
            endpoints[(row.series_id, row.day, row.key_id)].append(
                (row.n_open, row.n_blocked, row.n_throttled, row.n_inconclusive))
        for row in conn.execute(sa.select(u.series_id, u.start, u.key_id, u.u_open, u.u_blocked,
                                          u.u_throttled, u.u_inconclusive)
                                .where(u.span == "d",
                                       sa.tuple_(u.series_id, u.start, u.key_id).in_(chunk))):
            flags = (row.u_open, row.u_blocked, row.u_throttled, row.u_inconclusive)
            old[(row.series_id, row.start, row.key_id)] = VERDICTS[flags.index(1)] \
                if 1 in flags else None
    day_rows, month_rows = [], []
    for key in keys:
        series_id, day, key_id = key
        n, signed, upstream = units[key]
        new = unit_verdict(endpoints[key])
        before = old.get(key)
        flags = {f"u_{v}": int(v == new) for v in VERDICTS}
        day_rows.append({"span": "d", "start": day, "series_id": series_id, "key_id": key_id,
                         **flags, "n": n, "n_signed": signed, "n_upstream": upstream})
        delta = {f"u_{v}": int(v == new) - int(v == before) for v in VERDICTS}
        month_rows.append({"span": "m", "start": month_of(day), "series_id": series_id,
                           "key_id": key_id, **delta, "n": n, "n_signed": signed,
                           "n_upstream": upstream})
    counters = ("n", "n_signed", "n_upstream")
    statement = writer.insert(dash_unit)
    excluded = statement.excluded
    conn.execute(statement.on_conflict_do_update(
        index_elements=["span", "start", "series_id", "key_id"],
        set_={**{f"u_{v}": excluded[f"u_{v}"] for v in VERDICTS},
              **{c: dash_unit.c[c] + excluded[c] for c in counters}}), day_rows)
    writer.add(dash_unit, _merged(month_rows, (*(f"u_{v}" for v in VERDICTS), *counters)),
               ["span", "start", "series_id", "key_id"],
               [*(f"u_{v}" for v in VERDICTS), *counters])


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


ROLLUP_COLUMNS = (measurements.c.seq, measurements.c.key_id, measurements.c.service,
                  measurements.c.check_name, measurements.c.role, measurements.c.transport,
                  measurements.c.endpoint_host, measurements.c.endpoint_port,
                  measurements.c.verdict, measurements.c.blocking, measurements.c.link_type,
                  measurements.c.cc, measurements.c.asn, measurements.c.as_org,
                  measurements.c.started_at, measurements.c.received_at, measurements.c.record)


def rebuild_on(conn: sa.Connection, chunk: int = 5000) -> int:
    """Empty the rollups and roll up every stored measurement again, in seq
    order, in the caller's transaction."""
    for table in (dash_endpoint_day, dash_unit, dash_method, dash_key_version):
        conn.execute(sa.delete(table))
    conn.execute(sa.update(dash_series).values(dirty=True))
    after, total = 0, 0
    while True:
        rows = conn.execute(sa.select(*ROLLUP_COLUMNS).where(measurements.c.seq > after)
                            .order_by(measurements.c.seq).limit(chunk)).all()
        if not rows:
            return total
        total += apply(conn, rows)
        after = rows[-1].seq
