"""A throttle record's comparison as a self-contained HTML fragment, for the
measurement page: the service-like flow and its bit-inverted control side by
side, rate (with bars) and loss, per direction, as Wehe shows a replay.

    from collector.throttle_fragment import throttle_comparison_html
    html = throttle_comparison_html(record)   # "" for a record with nothing to compare

The figures come from probe.core.comparison, as in the probe's results table.
No script, no external style: inline styles only (the pages' CSP allows
`style-src 'unsafe-inline'` and nothing else); every value is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from probe.core.comparison import FlowPair, flow_pairs, kbit, percent

BAR = ("display:inline-block;height:.7em;vertical-align:middle;margin-right:.4em;"
       "background:{color};width:{width:.0f}px")
FINDING = {"rate": "rate differs", "loss": "loss differs", "unsure": "unsure",
           "no": "treated alike"}


def _bar(value: float | None, top: float, color: str) -> str:
    width = 0.0 if value is None or top <= 0 else 120 * value / top
    return f'<span style="{BAR.format(color=color, width=width)}"></span>'


def _row(pair: FlowPair) -> str:
    top = max(pair.voip_kbit or 0, pair.control_kbit or 0)
    differs = pair.finding in ("rate", "loss")
    style = "color:#a60;font-weight:bold" if differs else "color:#555"
    return (f"<tr><th scope=row>{escape(pair.label)}</th>"
            f"<td>{_bar(pair.voip_kbit, top, '#c33')}{escape(kbit(pair.voip_kbit))}</td>"
            f"<td>{_bar(pair.control_kbit, top, '#36c')}{escape(kbit(pair.control_kbit))}</td>"
            f"<td>{escape(percent(pair.voip_loss))}</td>"
            f"<td>{escape(percent(pair.control_loss))}</td>"
            f'<td style="{style}">{escape(FINDING.get(pair.finding, pair.finding))}</td></tr>')


def throttle_comparison_html(record: dict[str, Any]) -> str:
    pairs = flow_pairs(record)
    if not pairs:
        return ""
    endpoint = record.get("endpoint") or {}
    caption = (f"{record.get('service', '')}: {endpoint.get('profile') or 'call'}-like flow "
               f"vs its bit-inverted control, {endpoint.get('transport', '')} port "
               f"{endpoint.get('port', '')} (kbit/s, loss)")
    head = ("<tr><th></th><th scope=col>call-like kbit/s</th><th scope=col>control kbit/s</th>"
            "<th scope=col>call-like loss</th><th scope=col>control loss</th>"
            "<th scope=col>finding</th></tr>")
    return ('<table class="vw-throttle" style="border-collapse:collapse;font-size:.9em">'
            f"<caption style=\"text-align:left\">{escape(caption)}</caption>"
            f"<thead>{head}</thead><tbody>{''.join(_row(p) for p in pairs)}</tbody></table>")
