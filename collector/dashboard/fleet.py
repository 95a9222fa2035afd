"""The fleet, for the collector's operators: every registered key with what it
measured (networks, link types, software versions, when), and the coverage
gaps: which operator x link type has no live probe (no data from an
unrevoked key in the last LIVE_DAYS days)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from collector.dashboard.cells import _live
from collector.dashboard.rollup import LINKS
from collector.db.schema import (
    dash_key_version,
    dash_series,
    dash_series_day,
    dash_unit,
    probes,
)

LIVE_DAYS = 7


@dataclass
class Network:
    cc: str
    operator: str
    as_org: str | None
    link: str
    measurements: int
    last_day: date


@dataclass
class Version:
    version: str
    first_at: datetime
    last_at: datetime
    n: int
    n_ahead: int


@dataclass
class FleetKey:
    key_id: str
    registered_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    networks: list[Network] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)

    @property
    def measurements(self) -> int:
        return sum(v.n for v in self.versions)

    @property
    def ahead(self) -> int:
        return sum(v.n_ahead for v in self.versions)

    @property
    def links(self) -> list[str]:
        return sorted({n.link for n in self.networks})


@dataclass
class Coverage:
    cc: str
    operator: str
    as_org: str | None
    live: dict[str, int]  # link -> live probes
    last_day: dict[str, date]  # link -> last day with data

    def gaps(self) -> list[str]:
        return [link for link in LINKS if not self.live.get(link)]


def fleet(engine: sa.Engine, today: date) -> tuple[list[FleetKey], list[Coverage]]:
    u, s, v, p = dash_unit.c, dash_series.c, dash_key_version.c, probes.c
    d = dash_series_day.c
    with engine.connect() as conn:
        keys = {row.key_id: FleetKey(row.key_id, row.registered_at, row.revoked_at,
                                     row.last_seen_at)
                for row in conn.execute(sa.select(p.key_id, p.registered_at, p.revoked_at,
                                                  p.last_seen_at).order_by(p.registered_at))}
        for row in conn.execute(
                sa.select(u.key_id, s.cc, s.operator, s.as_org, s.link, sa.func.sum(u.n),
                          sa.func.max(u.start))
                .select_from(dash_unit.join(dash_series, s.id == u.series_id))
                .where(u.span == "m")
                .group_by(u.key_id, s.cc, s.operator, s.as_org, s.link)):
            if row.key_id in keys:
                keys[row.key_id].networks.append(Network(row.cc, row.operator, row.as_org,
                                                         row.link, int(row[5]), row[6]))
        for row in conn.execute(sa.select(v.key_id, v.version, v.first_at, v.last_at, v.n,
                                          v.n_ahead).order_by(v.key_id, v.first_at)):
            if row.key_id in keys:
                keys[row.key_id].versions.append(Version(*row[1:]))
        live: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for row in conn.execute(
                sa.select(s.cc, s.operator, s.link, sa.func.count(sa.distinct(u.key_id)))
                .select_from(dash_unit.join(dash_series, s.id == u.series_id))
                .where(u.span == "d", u.start >= today - timedelta(days=LIVE_DAYS),
                       _live(dash_unit))
                .group_by(s.cc, s.operator, s.link)):
            live[(row.cc, row.operator)][row.link] = int(row[3])
        last: dict[tuple[str, str], dict[str, date]] = defaultdict(dict)
        names: dict[tuple[str, str], str | None] = {}
        for series in conn.execute(sa.select(s.id, s.cc, s.operator, s.link, s.as_org)):
            names[(series.cc, series.operator)] = names.get(
                (series.cc, series.operator)) or series.as_org
            # one row a day with any probe's unit (revoked included, as before): the
            # newest is the last entry of the series in dash_series_day's primary key
            newest = conn.execute(sa.select(sa.func.max(d.day)).where(
                d.series_id == series.id)).scalar_one()
            if newest is not None:
                held = last[(series.cc, series.operator)]
                held[series.link] = max(newest, held.get(series.link, newest))
    coverage = [Coverage(cc, operator, names[(cc, operator)], live.get((cc, operator), {}),
                         last.get((cc, operator), {}))
                for cc, operator in sorted(names, key=lambda k: (k[0] == "", k))]
    for key in keys.values():
        key.networks.sort(key=lambda n: (n.cc, n.operator, n.link))
    return list(keys.values()), coverage
