"""Timelines as server-rendered SVG: one stacked bar per day with data (the
share of probes reading it blocked, throttled, inconclusive, open), detected
changes as marked lines linking to the measurements behind them. No script;
every text escaped; colours from the stylesheet's classes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

from collector.dashboard.cells import Period
from collector.dashboard.changes import ChangePoint

WIDTH, HEIGHT = 960, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 22, 34
STACK = ("blocked", "throttled", "inconclusive", "open")  # bottom to top


@dataclass(frozen=True)
class Marker:
    change: ChangePoint
    href: str
    label: str  # "start of blocking, 7 Jan 2016, confidence 78%"


def timeline(period: Period, daily: dict[date, dict[str, int]], markers: list[Marker],
             title: str, month_label: Callable[[date], str],
             percent: Callable[[float], str]) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    days = max(period.days, 1)
    step = plot_w / days

    def x(day: date) -> float:
        return LEFT + (day - period.start).days * step

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} '
           f'{HEIGHT}" role="img" aria-label="{escape(title)}" direction="ltr">',
           f"<title>{escape(title)}</title>",
           f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>']
    for share in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - share)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/><text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{escape(percent(share))}</text>')
    bar = max(step * 0.9, 1.5)
    # the detected blocked stretches, shaded behind the bars
    ordered = sorted((m.change for m in markers), key=lambda c: c.at)
    opened: date | None = None
    for change in ordered:
        if change.kind == "start" and opened is None:
            opened = change.at
        elif change.kind == "end" and opened is not None:
            out.append(_band(x, opened, change.at, period, TOP, plot_h))
            opened = None
    if opened is not None:
        out.append(_band(x, opened, period.end + timedelta(days=1), period, TOP, plot_h))
    for day, counts in sorted(daily.items()):
        if not period.start <= day <= period.end:
            continue
        total = sum(counts.get(v, 0) for v in STACK)
        if not total:
            continue
        y = TOP + plot_h
        for verdict in STACK:
            share = counts.get(verdict, 0) / total
            if not share:
                continue
            h = plot_h * share
            y -= h
            tip = f"{day.isoformat()}: {verdict} {percent(share)} ({counts.get(verdict, 0)}/" \
                  f"{total})"
            out.append(f'<rect class="v-{verdict}" x="{x(day):.2f}" y="{y:.2f}" '
                       f'width="{bar:.2f}" height="{h:.2f}"><title>{escape(tip)}</title></rect>')
    # month ticks (or years on long periods)
    months = (period.end.year - period.start.year) * 12 + period.end.month - period.start.month
    every = 1 if months <= 14 else 3 if months <= 40 else 12
    year, month = period.start.year, period.start.month
    while (year, month) <= (period.end.year, period.end.month):  # no date past the calendar's
        tick = date(year, month, 1)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if tick >= period.start and (tick.month - 1) % every == 0:
            tx = x(tick)
            out.append(f'<line class="tick" x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP + plot_h}" '
                       f'y2="{TOP + plot_h + 5}"/><text class="axis" x="{tx:.1f}" '
                       f'y="{TOP + plot_h + 18}" text-anchor="middle">'
                       f"{escape(month_label(tick))}</text>")
    for marker in markers:
        change = marker.change
        if not period.start <= change.at <= period.end:
            continue
        mx = x(change.at) + bar / 2
        css = "change-start" if change.kind == "start" else "change-end"
        out.append(f'<a href="{escape(marker.href)}" class="{css}">'
                   f"<title>{escape(marker.label)}</title>"
                   f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP - 8}" y2="{TOP + plot_h}"/>'
                   f'<circle cx="{mx:.1f}" cy="{TOP - 10}" r="6"/>'
                   f'<rect class="hit" x="{mx - 8:.1f}" y="{TOP - 18}" width="16" '
                   f'height="{plot_h + 18}"/></a>')
    out.append("</svg>")
    return "".join(out)


def _band(x: Callable[[date], float], start: date, end: date, period: Period, top: float,
          height: float) -> str:
    left = x(max(start, period.start))
    right = x(min(end, period.end + timedelta(days=1)))
    if right <= left:
        return ""
    return (f'<rect class="band" x="{left:.1f}" y="{top}" width="{right - left:.1f}" '
            f'height="{height}"/>')
