"""The evidence report (`voipwatch-collector report`): one country (and
optionally one AS and one service) over one period, from the stored records,
as HTML or PDF (docs/evidence.md, "The evidence report").

`facts` reads the records once, in constant memory (the set's hash, in log
order, as they stream by; a second read in that order when they did not come
in it), and returns everything the renderers print: the same data gives the
same facts, the same facts the same bytes (no clock, no randomness, every
list sorted).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from operator import itemgetter, lt
from typing import Any

import sqlalchemy as sa

from collector.db.schema import measurements, utc_of
from collector.identity import CollectorKey
from collector.store import Filters, MeasurementStore
from collector.translog import TransLog
from probe.core.evidence import DatasetHash, dataset_sha256, leaf_time
from probe.core.record import rfc3339

VERDICTS = ("open", "blocked", "throttled", "inconclusive")
_m = measurements.c
# each row `facts` reads, after scan's seq: indexes into it
(KEY, SERVICE, ROLE, VERDICT, BLOCKING, LINK, ORG, ATTRIBUTION, MISMATCH, LATE, DAY, MOMENT,
 SHA, LOG_INDEX) = range(1, 15)


def columns(dialect: str) -> tuple[Any, ...]:
    """What `facts` reads of each record (in the order above): its UTC day as
    SQL writes it and started_at as the driver gives it (SQLite: text, which
    sorts as it compares), so that no row builds a datetime in Python."""
    if dialect == "sqlite":
        day: Any = sa.func.substr(_m.started_at, 1, 10)
    else:
        day = sa.func.to_char(sa.func.timezone("UTC", _m.started_at), "YYYY-MM-DD")
    return (_m.key_id, _m.service, _m.role, _m.verdict, _m.blocking, _m.link_type, _m.as_org,
            _m.attribution, _m.attribution_mismatch,
            _m.late_seconds.is_not(None).label("late"), sa.type_coerce(day, sa.String),
            sa.type_coerce(_m.started_at, sa.String).label("moment"), _m.record_sha256,
            _m.log_index)


@dataclass
class ServiceLine:
    service: str
    role: str
    verdicts: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    first_blocked: str | None = None
    last_blocked: str | None = None


@dataclass
class Facts:
    cc: str
    asn: int | None
    as_orgs: list[str]
    service: str | None
    since: datetime
    until: datetime  # exclusive
    records: int = 0
    probes: int = 0
    link_types: list[tuple[str, int]] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)
    lines: list[ServiceLine] = field(default_factory=list)
    bucket: str = "day"  # or "week"
    series: list[tuple[str, dict[str, int]]] = field(default_factory=list)  # verdicts per bucket
    methods_series: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    first_blocked: str | None = None
    last_blocked: str | None = None
    attribution: dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    late: int = 0
    dataset_sha256: str = ""
    tree_head: dict[str, Any] = field(default_factory=dict)
    collector: dict[str, str] = field(default_factory=dict)

    @property
    def until_inclusive(self) -> date:
        return (self.until - timedelta(days=1)).date()

    def scope(self) -> str:
        where = self.cc + (f", AS{self.asn}" if self.asn is not None else "")
        if self.as_orgs:
            where += f" ({', '.join(self.as_orgs)})"
        what = f"{self.service} " if self.service else ""
        return (f"{what}{where}, {self.since.date().isoformat()} to "
                f"{self.until_inclusive.isoformat()}")

    def export_command(self) -> str:
        parts = ["voipwatch-collector export --format jsonl --out evidence.jsonl",
                 f"--cc {self.cc}"]
        if self.asn is not None:
            parts.append(f"--asn {self.asn}")
        if self.service:
            parts.append(f"--service {self.service}")
        parts += [f"--since {rfc3339(self.since)}", f"--until {rfc3339(self.until)}",
                  f"--tree-size {self.tree_head.get('tree_size')}"]
        return " ".join(parts)

    def export_url(self) -> str:
        query = [f"cc={self.cc}"]
        if self.asn is not None:
            query.append(f"asn={self.asn}")
        if self.service:
            query.append(f"service={self.service}")
        query += [f"since={rfc3339(self.since)}", f"until={rfc3339(self.until)}",
                  f"tree_size={self.tree_head.get('tree_size')}"]
        return "/api/v1/export?format=jsonl&" + "&".join(query)


def _bucket(day: str, weekly: bool) -> str:
    """A day's bucket: itself, or its week's Monday."""
    if not weekly:
        return day
    moment = date.fromisoformat(day)
    return (moment - timedelta(days=moment.weekday())).isoformat()


def facts(store: MeasurementStore, log: TransLog | None, key: CollectorKey, cc: str,
          asn: int | None, since: datetime, until: datetime, service: str | None = None,
          tree_size: int | None = None, progress: Callable[[int], None] | None = None,
          chunk: int = 20_000) -> Facts:
    """Everything the report says, for records filed under `cc` (and `asn`),
    started in [since, until), among the log's first `tree_size` entries.
    `progress` is told the number of records read after each chunk of `chunk`.

    Each chunk is counted by column groups (`Counter` over `itemgetter`, in C):
    a Python statement per record made the report a fifth of a raw read's rate."""
    size = None
    if log is not None:
        current = log.size()
        size = current if tree_size is None else tree_size
        if not 0 <= size <= current:
            raise ValueError(f"tree size {size}: the log has {current} entries")
    filters = Filters(cc=cc.upper(), asn=asn, since=since, until=until, service=service,
                      log_size=size)
    out = Facts(cc=cc.upper(), asn=asn, as_orgs=[], service=service, since=since, until=until)
    weekly = (until - since) > timedelta(days=62)
    out.bucket = "week" if weekly else "day"
    probes: set[str] = set()
    tallies: dict[int, Counter[Any]] = {column: Counter() for column in
                                        (LINK, ORG, ATTRIBUTION, MISMATCH, LATE)}
    by_day: Counter[tuple[str, str, str | None]] = Counter()
    by_line: Counter[tuple[str, str, str, str | None]] = Counter()
    day_key, line_key = itemgetter(DAY, VERDICT, BLOCKING), itemgetter(SERVICE, ROLE, VERDICT,
                                                                       BLOCKING)
    blocked_span: dict[tuple[str, str], tuple[Any, Any]] = {}  # a line's first, last blocked
    # the set's hash as it streams by, while it comes in log order: always on
    # SQLite; concurrent PostgreSQL uploads may enter the log in another order
    # than they inserted
    digests, last_index = DatasetHash(), -1
    for rows in store.scan(filters, columns(store.dialect), chunk):
        out.records += len(rows)
        if progress is not None:
            progress(out.records)
        probes.update(map(itemgetter(KEY), rows))
        for column, counter in tallies.items():
            counter.update(map(itemgetter(column), rows))
        by_day.update(map(day_key, rows))
        by_line.update(map(line_key, rows))
        for row in [row for row in rows if row[VERDICT] == "blocked"]:
            line, moment = (row[SERVICE], row[ROLE]), row[MOMENT]
            first, last = blocked_span.get(line, (moment, moment))
            blocked_span[line] = (min(first, moment), max(last, moment))
        if last_index is not None:
            logged = [(row[SHA], row[LOG_INDEX]) for row in rows
                      if row[SHA] is not None and row[LOG_INDEX] is not None]
            indexes = [last_index, *(index for _, index in logged)]
            if all(map(lt, indexes, indexes[1:])):
                digests.update(digest for digest, _ in logged)
                last_index = indexes[-1]
            else:
                last_index = None  # out of order: read again in order below
    buckets = {day: _bucket(day, weekly) for day, _, _ in by_day}
    series: dict[str, Counter[str]] = defaultdict(Counter)
    method_series: dict[str, Counter[str]] = defaultdict(Counter)
    for (day, verdict, blocking), count in by_day.items():
        series[buckets[day]][verdict] += count
        if verdict in ("blocked", "throttled"):
            method_series[buckets[day]][blocking or "unknown"] += count
    lines: dict[tuple[str, str], ServiceLine] = {}
    verdicts: Counter[str] = Counter()
    for (service_, role, verdict, blocking), count in by_line.items():
        line = lines.get((service_, role))
        if line is None:
            line = lines[service_, role] = ServiceLine(service_, role)
        line.verdicts[verdict] += count
        verdicts[verdict] += count
        if verdict in ("blocked", "throttled"):
            line.methods[blocking or "unknown"] += count
    for (service_, role), (first, last) in blocked_span.items():
        lines[service_, role].first_blocked = leaf_time(utc_of(first))
        lines[service_, role].last_blocked = leaf_time(utc_of(last))
    links, orgs = tallies[LINK], tallies[ORG]
    attribution: Counter[str] = Counter()
    for name, count in tallies[ATTRIBUTION].items():
        attribution[name or "none"] += count
    out.mismatches = sum(count for flag, count in tallies[MISMATCH].items() if flag)
    out.late = sum(count for flag, count in tallies[LATE].items() if flag)
    out.probes = len(probes)
    out.link_types = sorted(links.items(), key=lambda kv: (-kv[1], kv[0]))
    out.as_orgs = [name for name, _ in sorted(((name, count) for name, count in orgs.items()
                                               if name), key=lambda kv: (-kv[1], kv[0]))][:3]
    out.verdicts = {v: verdicts[v] for v in VERDICTS}
    out.lines = [lines[k] for k in sorted(lines)]
    out.series = [(b, {v: series[b][v] for v in VERDICTS}) for b in sorted(series)]
    all_methods: Counter[str] = Counter()
    for counter in method_series.values():
        all_methods.update(counter)
    out.methods = [m for m, _ in sorted(all_methods.items(), key=lambda kv: (-kv[1], kv[0]))]
    out.methods_series = [(b, {m: method_series[b][m] for m in out.methods})
                          for b in sorted(method_series)]
    blocked = [t for line in out.lines for t in (line.first_blocked, line.last_blocked) if t]
    out.first_blocked = min(blocked) if blocked else None
    out.last_blocked = max(blocked) if blocked else None
    out.attribution = dict(sorted(attribution.items()))
    out.dataset_sha256 = digests.hexdigest() if last_index is not None else \
        dataset_sha256(store.digests_in_log_order(filters))
    out.collector = key.public()
    if log is not None and size is not None:
        out.tree_head = log.head_at(size)
    return out
