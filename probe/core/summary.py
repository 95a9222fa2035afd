"""One word per service and role ("messages open, calls blocked"): the
probe's results table and the collector's dashboard both say it this way."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any


def role_verdict(verdicts: Iterable[str]) -> str:
    """One word for a service's role: blocked if any endpoint is, then throttled,
    then open if any endpoint works, else inconclusive."""
    found = set(verdicts)
    for verdict in ("blocked", "throttled", "open"):
        if verdict in found:
            return verdict
    return "inconclusive"


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{service: {role: verdict}} over signed records."""
    by_role: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_role[record["service"]][record["endpoint"]["role"]].append(record["verdict"])
    return {service: {role: role_verdict(v) for role, v in roles.items()}
            for service, roles in by_role.items()}
