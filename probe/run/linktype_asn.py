"""The measured network's ASN as a last, weak hint of the upstream kind.

Used only when nothing on the machine said cellular or fixed, and only for
an ASN the table (probe/data/upstream_asns.yaml) lists as announcing one kind
of customer: an operator whose mobile and fixed networks share an ASN gives
no hint. The ASN is the one attribution learnt for the pass
(`network.attribution`, probe.run.network).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from probe.core.record import Confidence, LinkSource, Upstream
from probe.run.linktype import Finding

KINDS = {"cellular": Upstream.CELLULAR, "fixed": Upstream.FIXED, "mixed": None}


@dataclass(frozen=True)
class AsnKind:
    asn: int
    operator: str
    kind: Upstream | None  # None: mobile and fixed customers alike


def parse_table(data: object, where: str) -> dict[int, AsnKind]:
    """The table from its YAML data; ValueError naming the entry when malformed."""
    if not isinstance(data, dict) or data.get("version") != 1 or \
            not isinstance(data.get("asns"), list):
        raise ValueError(f"{where}: expected `version: 1` and a list `asns`")
    table: dict[int, AsnKind] = {}
    for index, entry in enumerate(data["asns"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("asn"), int) or \
                entry.get("kind") not in KINDS or not entry.get("source"):
            raise ValueError(f"{where}: asns[{index}]: needs an integer `asn`, a `kind` "
                             f"({' | '.join(KINDS)}) and a `source`")
        table[entry["asn"]] = AsnKind(entry["asn"], str(entry.get("operator", "")),
                                      KINDS[entry["kind"]])
    return table


@cache
def load_table(path: Path | None = None) -> dict[int, AsnKind]:
    import yaml

    from probe.data import UPSTREAM_ASNS

    path = path or UPSTREAM_ASNS
    return parse_table(yaml.safe_load(path.read_text()), str(path))


def hint(asn: int | None, table: dict[int, AsnKind] | None = None) -> Finding | None:
    """What the ASN says of the upstream kind, if the table knows it."""
    if asn is None:
        return None
    entry = (load_table() if table is None else table).get(asn)
    if entry is None:
        return None
    if entry.kind is None:
        return Finding(LinkSource.ASN, Confidence.LOW,
                       f"AS{asn} ({entry.operator}) carries mobile and fixed customers: no hint")
    return Finding(LinkSource.ASN, Confidence.LOW,
                   f"AS{asn} ({entry.operator}) announces only its {entry.kind} customers",
                   upstream=entry.kind)
