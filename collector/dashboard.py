"""The results page: the latest verdict per service, role, network (country,
ASN) and link type, as one server-rendered HTML table. No scripts, no external
assets; every value is escaped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from probe.core.record import rfc3339
from probe.core.summary import role_verdict

ROLE_ORDER = {"call": 0, "messaging": 1}


@dataclass
class Line:
    service: str
    role: str
    cc: str | None
    asn: int | None
    as_org: str | None
    link_type: str
    verdicts: list[str] = field(default_factory=list)
    methods: set[str] = field(default_factory=set)
    latest: datetime | None = None
    from_upload: bool = False  # filed by the upload address's look-up, not signed

    @property
    def verdict(self) -> str:
        return role_verdict(self.verdicts)


def summarise(rows: Iterable[Any]) -> list[Line]:
    """Rows of `MeasurementStore.latest` (one per endpoint) grouped per line."""
    lines: dict[tuple[Any, ...], Line] = {}
    for row in rows:
        key = (row.service, row.role, row.cc, row.asn, row.as_org, row.link_type)
        line = lines.get(key)
        if line is None:
            line = lines[key] = Line(*key)
        line.verdicts.append(row.verdict)
        line.from_upload |= getattr(row, "attribution", None) == "collector"
        if row.blocking:
            line.methods.add(row.blocking)
        if line.latest is None or row.started_at > line.latest:
            line.latest = row.started_at
    return sorted(lines.values(), key=lambda line: (
        line.service, ROLE_ORDER.get(line.role, 9), line.cc or "~", line.asn or 0,
        line.as_org or "", line.link_type))


_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;
text-align:left}th{background:#f4f4f4}.open{color:#176b1e}.blocked{color:#b00020;
font-weight:bold}.throttled{color:#a86400}.inconclusive{color:#777}small{color:#666}
"""


def _network(line: Line) -> str:
    parts = [f"AS{line.asn}" if line.asn is not None else "", line.as_org or ""]
    text = " ".join(p for p in parts if p) or "unknown"
    # not signed by the probe: where the upload came from (docs/evidence.md)
    return text + " (upload address)" if line.from_upload else text


def render(lines: list[Line], total: int, window_days: int) -> str:
    rows = []
    for line in lines:
        counts: dict[str, int] = defaultdict(int)
        for verdict in line.verdicts:
            counts[verdict] += 1
        detail = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        rows.append(
            "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in (
                line.service, line.role, line.cc or "unknown", _network(line), line.link_type))
            + f'<td class="{escape(line.verdict)}">{escape(line.verdict)}</td>'
            + f"<td>{escape(', '.join(sorted(line.methods)))}</td>"
            + f"<td><small>{escape(detail)}</small></td>"
            + f"<td><small>{escape(rfc3339(line.latest) if line.latest else '')}</small></td>"
            + "</tr>")
    table = ("<table><thead><tr><th>service</th><th>role</th><th>country</th><th>network</th>"
             "<th>link</th><th>verdict</th><th>how</th><th>endpoints</th><th>latest</th></tr>"
             "</thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else (
        "<p>No measurements yet.</p>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>voipwatch results</title><style>{_STYLE}</style></head><body>"
            "<h1>voipwatch: latest results</h1>"
            f"<p>The newest verdict per endpoint over the last {window_days} days, combined "
            "per service, role (calls or messaging), network and link type: "
            "<b>blocked</b> if any endpoint is. "
            f"{total} measurements stored. Data: <a href='/api/v1/export?format=jsonl'>"
            "JSONL export</a>, <a href='/docs'>API</a>.</p>"
            f"{table}</body></html>")
