"""The results table at the end of a run, and the per-service call-path summary
("messages open, calls blocked" at a glance, probe.core.summary)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from probe.core.summary import summarise

VERDICT_STYLE = {"open": "green", "blocked": "bold red", "throttled": "yellow",
                 "inconclusive": "dim"}
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


def _styled(verdict: str) -> str:
    return f"[{VERDICT_STYLE.get(verdict, '')}]{verdict}[/]"


def render(records: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="voipwatch results", title_justify="left", show_lines=False)
    for column in ("service", "role", "check", "endpoint", "verdict", "how", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
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
        table.add_row(record["service"] if first else "", endpoint["role"], endpoint["check"],
                      _target(endpoint), _styled(record["verdict"]), how,
                      str(record["runtime_ms"]), end_section=False)
    console.print(table)

    summary = Table(title="call path vs messaging", title_justify="left")
    for column in ("service", "messaging", "calls"):
        summary.add_column(column)
    for service, roles in sorted(summarise(records).items()):
        summary.add_row(service, _styled(roles["messaging"]) if "messaging" in roles else "-",
                        _styled(roles["call"]) if "call" in roles else "-")
    console.print(summary)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record["verdict"]] += 1
    console.print(", ".join(f"{counts[v]} {v}" for v in VERDICT_STYLE if counts[v]) or "no records")
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
