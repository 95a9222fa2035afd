"""The results table at the end of a run, and the per-service call-path summary
("messages open, calls blocked" at a glance, probe.core.summary)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from probe.core.comparison import flow_pairs, kbit, percent
from probe.core.summary import summarise
from probe.ui.i18n import N_, _

VERDICT_STYLE = {"open": "green", "blocked": "bold red", "throttled": "yellow",
                 "inconclusive": "dim"}
# the words the table shows, translated at display time (probe/ui/i18n.py)
WORDS = {"open": N_("open"), "blocked": N_("blocked"), "throttled": N_("throttled"),
         "inconclusive": N_("inconclusive"), "call": N_("call"), "messaging": N_("messaging")}
COLUMNS = (N_("service"), N_("role"), N_("check"), N_("endpoint"), N_("verdict"), N_("how"),
           N_("ms"))
ROLE_ORDER = {"messaging": 0, "call": 1}


def _target(endpoint: dict[str, Any]) -> str:
    if endpoint["check"] == "dns":  # its port is only the one a TLS confirmation would use
        return f"{endpoint['host']} {endpoint.get('qtype', 'A')}"
    if "url" in endpoint and endpoint["check"] in ("webrtc", "throttle"):
        extra = endpoint.get("policy") or endpoint.get("profile") or ""
        return f"{endpoint['host']}:{endpoint['port']}/{endpoint['transport']} {extra}".strip()
    return f"{endpoint['host']}:{endpoint['port']}/{endpoint['transport']}"


def _proved(record: dict[str, Any]) -> str:
    """What an open VoIP check showed, in a word or two (docs/checks.md)."""
    check, evidence = record["endpoint"]["check"], record.get("evidence", {})
    if check == "turn":
        if "relay" in evidence:
            return "relayed"
        return "401 challenge" if evidence.get("auth") == "challenge" else "allocated"
    if check == "sip" and evidence.get("alg_detected"):
        return "SIP ALG"
    if check == "stun" and (evidence.get("mapped") or {}).get("nat"):
        return "behind NAT"
    return ""


def _word(value: str) -> str:
    return _(WORDS[value]) if value in WORDS else value


def _styled(verdict: str) -> str:
    return f"[{VERDICT_STYLE.get(verdict, '')}]{_word(verdict)}[/]"


def render(records: list[dict[str, Any]], console: Console) -> None:
    table = Table(title=_("voipwatch results"), title_justify="left", show_lines=False)
    for column in COLUMNS:
        table.add_column(_(column), justify="right" if column == "ms" else "left")
    ordered = sorted(records, key=lambda r: (r["service"], ROLE_ORDER.get(
        r["endpoint"]["role"], 9), r["endpoint"]["check"], _target(r["endpoint"])))
    previous = None
    for record in ordered:
        endpoint = record["endpoint"]
        first = record["service"] != previous
        previous = record["service"]
        how = record.get("blocking") or ""
        if not how and record["verdict"] == "inconclusive":
            how = f"[dim]{record['evidence'].get('rule', '')}[/]"
        elif not how and record["verdict"] == "open" and _proved(record):
            how = f"[dim]{_proved(record)}[/]"
        table.add_row(record["service"] if first else "", _word(endpoint["role"]),
                      endpoint["check"],
                      _target(endpoint), _styled(record["verdict"]), how,
                      str(record["runtime_ms"]), end_section=False)
    console.print(table)

    render_throttle(ordered, console)

    summary = Table(title=_("call path vs messaging"), title_justify="left")
    for column in (_("service"), _("messaging"), _("calls")):
        summary.add_column(column)
    for service, roles in sorted(summarise(records).items()):
        summary.add_row(service, _styled(roles["messaging"]) if "messaging" in roles else "-",
                        _styled(roles["call"]) if "call" in roles else "-")
    console.print(summary)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record["verdict"]] += 1
    console.print(", ".join(f"{counts[v]} {_word(v)}" for v in VERDICT_STYLE if counts[v])
                  or _("no records"))
    if records:
        console.print(link_line(records[-1]["network"]), markup=False)


def link_line(network: dict[str, Any]) -> str:
    """The link the records say they measured (the last record's: after any change)."""
    line = f"link: {network.get('link_type')} ({network.get('link_type_source', '?')})"
    if "access" in network:
        confidence = network.get("upstream_confidence")
        line += (f"; access {network['access']} ({network.get('access_source')}), network "
                 f"behind it {network.get('upstream')} ({network.get('upstream_source')}"
                 f"{', ' + confidence if confidence else ''})")
    return line + ". Not right? --link-type (docs/linktype.md)"


FINDING_STYLE = {"rate": "yellow", "loss": "yellow", "unsure": "dim", "no": "green"}


def render_throttle(records: list[dict[str, Any]], console: Console) -> None:
    """Each throttle record's two flows side by side, as Wehe shows a replay:
    the service-like flow and its bit-inverted control, rate and loss."""
    rows = [(record, pair) for record in records for pair in flow_pairs(record)]
    if not rows:
        return
    table = Table(title=_("throttling: call-like flow vs its bit-inverted control"),
                  title_justify="left")
    columns = [(_("service"), "left"), (_("endpoint"), "left"), (_("direction"), "left"),
               (_("call kbit/s"), "right"), (_("control kbit/s"), "right"),
               (_("call loss"), "right"), (_("control loss"), "right"), (_("differs"), "left")]
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = None
    for record, pair in rows:
        first = record["id"] != previous
        previous = record["id"]
        style = FINDING_STYLE.get(pair.finding, "")
        table.add_row(record["service"] if first else "",
                      _target(record["endpoint"]) if first else "", pair.label,
                      kbit(pair.voip_kbit), kbit(pair.control_kbit), percent(pair.voip_loss),
                      percent(pair.control_loss), f"[{style}]{pair.finding}[/]")
    console.print(table)

