"""The matrix's cells as display strings, computed once per cell in Python:
a table of a few hundred cells rendered through template macros cost more than
the query behind it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from collector.dashboard.cells import Cell
from collector.dashboard.changestore import StoredChange
from collector.dashboard.i18n import Formats

STACK = ("blocked", "throttled", "inconclusive", "open")


@dataclass(frozen=True)
class CellView:
    verdict: str  # css class
    word: str
    since: str  # "blocked since ..." or ''
    since_kind: str
    bar: Markup
    meta: str
    single: bool
    disagree: str  # "probes disagree: 2 blocked, 1 open" or ''
    methods: tuple[str, ...]
    lookup: bool
    upstream: bool
    href: str


def bar(shares: dict[str, float]) -> Markup:
    parts, x = [], 0.0
    for verdict in STACK:
        width = shares[verdict] * 100
        if width > 0:
            parts.append(f'<rect class="v-{verdict}" x="{x:.2f}" y="0" width="{width:.2f}" '
                         'height="8"/>')
            x += width
    return Markup('<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" '
                  'aria-hidden="true" focusable="false">' + "".join(parts) + "</svg>")


def cell_view(cell: Cell, change: StoredChange | None, fmt: Formats, gettext: Any,
              ngettext: Any, href: str, words: Callable[[str], str]) -> CellView:
    n = len(cell.probes)
    shares = cell.shares
    since, kind = "", ""
    if change is not None:
        kind = change.kind
        since = (gettext("blocked since %(day)s") if kind == "start" else
                 gettext("open again since %(day)s")) % {"day": fmt.date(change.at)}
    meta = " · ".join((
        f"{gettext('blocked')} {fmt.percent(shares['blocked'] + shares['throttled'])}",
        ngettext("%(num)s probe", "%(num)s probes", n) % {"num": fmt.number(n)},
        ngettext("%(num)s measurement", "%(num)s measurements", cell.measurements)
        % {"num": fmt.number(cell.measurements)}))
    disagree = ""
    if cell.disagreement:
        agree = cell.agreement
        disagree = gettext("probes disagree:") + " " + ", ".join(
            f"{fmt.number(agree[v])} {words(v)}" for v in STACK if agree.get(v))
    methods = tuple(m for m, _ in sorted(cell.methods.items(), key=lambda i: -i[1])[:3])
    return CellView(cell.verdict, words(cell.verdict), since, kind, bar(shares), meta, n == 1,
                    disagree, methods, cell.attribution != "signed", cell.upstream > 0,
                    str(escape(href)))
