"""`voipwatch-probe services`: the catalogue's services and their checks, per role.

The shipped catalogue is read as plain YAML (it is validated by the test
suite), so the command answers without importing the catalogue's pydantic
models; a catalogue named with `--catalogue` is validated in full first,
with the usual file:line message when it is wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from probe.core.errors import UserError

ROLES = ("messaging", "call")  # the order a reader expects: does chat work, do calls


class Entry(NamedTuple):
    role: str
    check: str
    target: str  # host:port/transport, or the URL for webrtc and throttle
    label: str | None


class ServiceSummary(NamedTuple):
    id: str
    name: str
    entries: tuple[Entry, ...]


def _target(endpoint: dict[str, Any]) -> str:
    if "url" in endpoint:
        port = endpoint.get("port")
        return f"{endpoint['url']}" + (f" port {port}/{endpoint.get('transport', 'udp')}"
                                       if port else "")
    port = endpoint.get("port")
    transport = endpoint.get("transport")
    return f"{endpoint.get('host', '?')}" + (f":{port}" if port else "") + (
        f"/{transport}" if transport else "")


def _from_data(data: Any, source: Path) -> list[ServiceSummary] | None:
    """The plain-YAML reading; None when the document is not shaped as expected
    (then the full validation says what is wrong)."""
    if not isinstance(data, dict) or not isinstance(data.get("services"), list):
        return None
    summaries = []
    for service in data["services"]:
        if not isinstance(service, dict) or not isinstance(service.get("endpoints"), list):
            return None
        entries = []
        for endpoint in service["endpoints"]:
            if not isinstance(endpoint, dict) or not {"check", "role"} <= endpoint.keys():
                return None
            entries.append(Entry(str(endpoint["role"]), str(endpoint["check"]),
                                 _target(endpoint), endpoint.get("label")))
        summaries.append(ServiceSummary(str(service.get("id")), str(service.get("name")),
                                        tuple(entries)))
    return summaries


def _validated(path: Path) -> list[ServiceSummary]:
    from probe.catalogue import load_catalogue

    catalogue = load_catalogue(path)
    raw = catalogue.model_dump(mode="json")
    summaries = _from_data(raw, path)
    assert summaries is not None  # a validated catalogue has every field read above
    return summaries


def read(path: Path | None) -> tuple[Path, list[ServiceSummary]]:
    """The catalogue's services: the shipped one quickly, any other validated."""
    if path is not None:
        return path, _validated(path)
    import yaml

    from probe.data import CATALOGUE

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(CATALOGUE.read_text(encoding="utf-8"), Loader=loader)
    except (OSError, yaml.YAMLError):
        data = None
    summaries = _from_data(data, CATALOGUE)
    return CATALOGUE, summaries if summaries is not None else _validated(CATALOGUE)


def _counts(entries: list[Entry]) -> str:
    counts = Counter(e.check for e in entries)
    return ", ".join(f"{check} x{n}" if n > 1 else check for check, n in counts.items())


def render(summaries: list[ServiceSummary], source: Path, endpoints: bool) -> str:
    width = max((len(s.id) for s in summaries), default=0) + 2
    lines = []
    for service in summaries:
        lines.append(f"{service.id:<{width}}{service.name}")
        roles = ROLES + tuple(sorted({e.role for e in service.entries} - set(ROLES)))
        for role in roles:
            mine = [e for e in service.entries if e.role == role]
            if not mine:
                continue
            if not endpoints:
                lines.append(f"  {role:<10} {_counts(mine)}")
                continue
            for entry in mine:
                label = f"  ({entry.label})" if entry.label else ""
                lines.append(f"  {role:<10} {entry.check:<9} {entry.target}{label}")
    total = sum(len(s.entries) for s in summaries)
    lines.append(f"{len(summaries)} services, {total} endpoints (catalogue: {source})")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    path = Path(args.catalogue) if args.catalogue else None
    source, summaries = read(path)
    if args.services:
        wanted = [s.strip() for s in args.services.split(",") if s.strip()]
        known = {s.id for s in summaries}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise UserError(f"unknown service {unknown[0]!r} in --services (the catalogue "
                            f"has: {', '.join(sorted(known))})")
        summaries = [s for s in summaries if s.id in wanted]
    sys.stdout.write(render(summaries, source, args.endpoints))
    return 0
