"""A throttle record's two flows side by side (Wehe-style), in the results
table and as the collector's HTML fragment."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from probe.core.comparison import flow_pairs
from probe.ui.report import render


def throttle_record(voip: float, control: float, loss_voip: float, rate: str) -> dict[str, Any]:
    direction = {"deficit": round(1 - voip / control, 3), "loss_voip": loss_voip,
                 "loss_control": 0.0, "rate": rate, "loss": "no"}
    return {"id": "r1", "service": "lumen", "network": {"link_type": "cellular"},
            "verdict": "throttled" if rate == "yes" else "open",
            "blocking": "throttle.rate" if rate == "yes" else None, "runtime_ms": 2300,
            "endpoint": {"check": "throttle", "host": "collector.lab", "port": 3480,
                         "transport": "udp", "role": "call", "url": "http://collector.lab",
                         "profile": "whatsapp"},
            "evidence": {"rule": "x", "kbit": {"up": {"voip": voip, "control": control},
                                               "rt": {"voip": voip, "control": control}},
                         "decision": {"directions": {"up": direction, "rt": direction}}}}


def test_pairs_read_the_records_rates_and_losses() -> None:
    pairs = flow_pairs(throttle_record(64.0, 254.9, 0.12, "yes"))
    assert [(p.label, p.voip_kbit, p.control_kbit, p.voip_loss, p.finding) for p in pairs] == [
        ("upstream", 64.0, 254.9, 0.12, "rate"), ("round trip", 64.0, 254.9, 0.12, "rate")]
    assert flow_pairs({"endpoint": {"check": "stun"}, "evidence": {}}) == []
    assert flow_pairs({"endpoint": {"check": "throttle"}, "evidence": {}}) == []


def test_the_results_table_shows_both_flows_side_by_side() -> None:
    console = Console(record=True, width=160)
    render([throttle_record(64.0, 254.9, 0.12, "yes")], console)
    text = console.export_text()
    assert "call-like flow vs its bit-inverted control" in text
    line = next(x for x in text.splitlines() if "upstream" in x)
    assert "64" in line and "255" in line and "12.0%" in line and "rate" in line
