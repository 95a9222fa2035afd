"""The evidence report as one self-contained HTML page: inline CSS and SVG,
no script, nothing fetched; the same facts give the same bytes."""

from __future__ import annotations

from html import escape

from collector.report import VERDICTS, Facts
from collector.report.text import sections

COLOURS = {"open": "#2e7d32", "blocked": "#c62828", "throttled": "#ef6c00",
           "inconclusive": "#9e9e9e"}
CSS = """body{font-family:"DejaVu Sans",Verdana,sans-serif;max-width:60em;margin:2em auto;
color:#222;line-height:1.4}table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;font-size:.9em}
td.n{text-align:right}code,pre{font-family:"DejaVu Sans Mono",monospace;font-size:.85em}
pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap;word-break:break-all}
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em}"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{escape(c)}</td>' if c.isdigit() else
                         f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def chart(facts: Facts) -> str:
    """Verdicts per day or week, stacked bars, as SVG."""
    if not facts.series:
        return "<p>No measurement in this period.</p>"
    width, height, left, bottom = 720, 220, 40, 40
    peak = max(sum(counts.values()) for _, counts in facts.series) or 1
    step = (width - left) / len(facts.series)
    bar = max(1.0, step * 0.8)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="verdicts per '
             f'{facts.bucket}">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
             'stroke="#444"/>',
             f'<text x="0" y="12" font-size="11">{peak}</text>']
    scale = (height - bottom - 10) / peak
    label_every = max(1, len(facts.series) // 8)
    for i, (bucket, counts) in enumerate(facts.series):
        x = left + i * step
        y = height - bottom
        for verdict in VERDICTS:
            h = counts[verdict] * scale
            if h:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                             f'height="{h:.1f}" fill="{COLOURS[verdict]}">'
                             f'<title>{escape(bucket)}: {counts[verdict]} {verdict}</title>'
                             "</rect>")
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="10">'
                         f"{escape(bucket)}</text>")
    parts.append("</svg>")
    legend = "".join(f'<span style="background:{COLOURS[v]}"></span>{v}' for v in VERDICTS)
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def render(facts: Facts) -> bytes:
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(facts.scope())}</title><style>{CSS}</style></head><body>"]
    for section in sections(facts):
        out.append(f"<h{section.level}>{escape(section.title)}</h{section.level}>")
        for paragraph in section.paragraphs:
            out.append(f"<p>{escape(paragraph)}</p>")
        if section.table is not None:
            out.append(_table(*section.table))
        if section.chart:
            out.append(chart(facts))
        if section.code:
            out.append("<pre>" + escape("\n".join(section.code)) + "</pre>")
    out.append("</body></html>\n")
    return "\n".join(out).encode("utf-8")
