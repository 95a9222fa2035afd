"""A throttle record's two flows side by side, as Wehe shows a replay: the
service-like (VoIP) flow and its bit-inverted control, rate and loss, per
direction. Read from the signed record's evidence (docs/throttle.md), so the
probe's results table and the collector's pages show the same figures."""

from __future__ import annotations

from typing import Any, NamedTuple

DIRECTIONS = {"up": "upstream", "rt": "round trip"}


class FlowPair(NamedTuple):
    direction: str  # `up` (arrivals at the reflector) or `rt` (echoes back)
    voip_kbit: float | None
    control_kbit: float | None
    voip_loss: float | None
    control_loss: float | None
    deficit: float | None  # 1 - voip / control goodput
    finding: str  # `rate`, `loss` (differentiated), `unsure` or `no`

    @property
    def label(self) -> str:
        return DIRECTIONS.get(self.direction, self.direction)


def flow_pairs(record: dict[str, Any]) -> list[FlowPair]:
    """One pair per direction measured; empty for a record that is not a
    throttle check's or that measured nothing (no reflector, budget spent)."""
    if record.get("endpoint", {}).get("check") != "throttle":
        return []
    evidence = record.get("evidence") or {}
    kbit = evidence.get("kbit") or {}
    directions = (evidence.get("decision") or {}).get("directions") or {}
    pairs = []
    for direction in DIRECTIONS:
        rates, stats = kbit.get(direction) or {}, directions.get(direction) or {}
        if not rates and not stats:
            continue
        found = (stats.get("rate"), stats.get("loss"))
        finding = ("rate" if found[0] == "yes" else "loss" if found[1] == "yes" else
                   "unsure" if "maybe" in found else "no")
        pairs.append(FlowPair(direction, _number(rates.get("voip")),
                              _number(rates.get("control")), _number(stats.get("loss_voip")),
                              _number(stats.get("loss_control")), _number(stats.get("deficit")),
                              finding))
    return pairs


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def kbit(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
