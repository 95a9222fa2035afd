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
from typing import Any

from collector.db.schema import measurements
from collector.identity import CollectorKey
from collector.store import Filters, MeasurementStore
from collector.translog import TransLog
from probe.core.evidence import DatasetHash, dataset_sha256, leaf_time
from probe.core.record import rfc3339

VERDICTS = ("open", "blocked", "throttled", "inconclusive")
_m = measurements.c
COLUMNS = (_m.key_id, _m.service, _m.role, _m.verdict, _m.blocking, _m.link_type, _m.as_org,
           _m.started_at, _m.attribution, _m.attribution_mismatch, _m.late_seconds,
           _m.record_sha256, _m.log_index)  # what `facts` reads of each record


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


def _bucket(moment: datetime, weekly: bool) -> str:
    day = moment.date()
    if weekly:
        day -= timedelta(days=day.weekday())  # the week's Monday
    return day.isoformat()


def facts(store: MeasurementStore, log: TransLog | None, key: CollectorKey, cc: str,
          asn: int | None, since: datetime, until: datetime, service: str | None = None,
          tree_size: int | None = None, progress: Callable[[int], None] | None = None
          ) -> Facts:
    """Everything the report says, for records filed under `cc` (and `asn`),
    started in [since, until), among the log's first `tree_size` entries.
    `progress` is told the number of records read after each chunk."""
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
    links: Counter[str] = Counter()
    orgs: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    series: dict[str, Counter[str]] = defaultdict(Counter)
    method_series: dict[str, Counter[str]] = defaultdict(Counter)
    lines: dict[tuple[str, str], ServiceLine] = {}
    attribution: Counter[str] = Counter()
    # the set's hash as it streams by, while it comes in log order: always on
    # SQLite; concurrent PostgreSQL uploads may enter the log in another order
    # than they inserted
    digests, last_index = DatasetHash(), -1
    read = 0
    buckets: dict[date, str] = {}  # each day's bucket, worked out once
    for rows in store.scan(filters, COLUMNS):
        read += len(rows)
        if progress is not None:
            progress(read)
        for row in rows:
            out.records += 1
            probes.add(row.key_id)
            links[row.link_type] += 1
            if row.as_org:
                orgs[row.as_org] += 1
            verdicts[row.verdict] += 1
            attribution[row.attribution or "none"] += 1
            out.mismatches += bool(row.attribution_mismatch)
            out.late += row.late_seconds is not None
            day = row.started_at.date()
            bucket = buckets.get(day)
            if bucket is None:
                bucket = buckets[day] = _bucket(row.started_at, weekly)
            series[bucket][row.verdict] += 1
            line = lines.get((row.service, row.role))
            if line is None:
                line = lines[row.service, row.role] = ServiceLine(row.service, row.role)
            line.verdicts[row.verdict] += 1
            if row.verdict in ("blocked", "throttled"):
                moment = leaf_time(row.started_at)
                method = row.blocking or "unknown"
                line.methods[method] += 1
                method_series[bucket][method] += 1
                if row.verdict == "blocked":
                    line.first_blocked = min(filter(None, (line.first_blocked, moment)))
                    line.last_blocked = max(filter(None, (line.last_blocked, moment)))
            if row.record_sha256 is not None and row.log_index is not None and \
                    last_index is not None:
                if row.log_index > last_index:
                    digests.add(row.record_sha256)
                    last_index = row.log_index
                else:
                    last_index = None  # out of order: read again in order below
    out.probes = len(probes)
    out.link_types = sorted(links.items(), key=lambda kv: (-kv[1], kv[0]))
    out.as_orgs = [name for name, _ in sorted(orgs.items(), key=lambda kv: (-kv[1], kv[0]))][:3]
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
