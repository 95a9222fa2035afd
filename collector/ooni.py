"""Export in OONI's measurement data format (`export --format ooni`).

One OONI measurement per line, as the base data format describes it (OONI
spec, data-formats/df-000-base.md, `data_format_version` 0.2.0), so OONI's
own tools and pipelines can read voipwatch records beside theirs:

- `test_name` `voipwatch_<check>` (`voipwatch_stun`, `voipwatch_webrtc`...),
  `test_version` the check's version, `input` the endpoint as a URL;
- `measurement_start_time` (`YYYY-MM-DD HH:MM:SS`, UTC), `test_runtime` (s);
- `probe_cc`, `probe_asn` (`AS<n>`), `probe_network_name`, `resolver_asn`:
  the network as the probe learnt it at measurement time (the signed
  `network.cc`/`asn`), else as the collector looked it up when the record
  arrived (a spooled record may arrive from elsewhere, later); `ZZ`/`AS0`
  when unknown, as OONI writes them; `probe_ip` OONI's placeholder;
- `report_id` and `measurement_uid` made from the start time, country, ASN,
  test name and the record's id (stable across exports);
- `annotations` (strings only): the engine, OONI's `network_type` and ours;
- `test_keys`: OONI's summary keys (`failure`, `accessible`, `blocking`:
  false when open, the method when blocked or throttled, null when
  inconclusive) and ours (`verdict`, `service`, `role`, `endpoint`,
  `evidence`), plus `voipwatch_record`: the signed record without its
  evidence (that is `test_keys.evidence`), signature included, and
  `voipwatch_collector`: what the collector added. The record is
  `voipwatch_record` with `evidence` put back: `voipwatch-probe verify`
  re-checks it on an OONI export as on ours.

A record stored before ingest held its form strictly (a `started_at` given as
a Unix time, nesting deeper than orjson writes) is still exported: its start
time is the one the collector filed it under (annotation
`voipwatch_started_at: collector`), a line too deep for orjson is written by
the standard library. One that cannot be mapped at all is left out, logged
(`collector.ooni`, a warning with the count and ids): never the whole export.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from probe.core.evidence import parse_time

log = logging.getLogger(__name__)

DATA_FORMAT_VERSION = "0.2.0"
SOFTWARE_NAME = "voipwatch-probe"
NETWORK_TYPE = {"cellular": "mobile", "wifi": "wifi", "ethernet": "wired", "adsl": "wired"}


def test_name(check: str) -> str:
    return f"voipwatch_{check}"


def _input(endpoint: dict[str, Any]) -> str:
    query = [f"transport={endpoint.get('transport')}"]
    for key in ("label", "policy", "profile"):
        if endpoint.get(key):
            query.append(f"{key}={endpoint[key]}")
    return f"{endpoint.get('check')}://{endpoint.get('host')}:{endpoint.get('port')}?" + \
        "&".join(query)


def _runtime(value: Any) -> float:
    """runtime_ms in seconds (0 when the record's is no number)."""
    try:
        return round(float(value or 0) / 1000, 3)
    except (TypeError, ValueError, OverflowError):
        return 0.0


def _asn(value: Any) -> str:
    return f"AS{value}" if isinstance(value, int) and not isinstance(value, bool) else "AS0"


def measurement(record: dict[str, Any], added: dict[str, Any],
                filed_at: datetime | None = None) -> dict[str, Any]:
    """The OONI measurement of one signed record; `added` is what the collector
    added (`received_at`, `probe_cc`, `probe_asn`, `probe_as_org`, `public_key`,
    `key_revoked_at`); `filed_at` the start time the collector filed it under,
    used when the record's own cannot be read (ValueError without one)."""
    endpoint = record.get("endpoint") or {}
    network = record.get("network") or {}
    evidence = record.get("evidence") or {}
    name = test_name(str(endpoint.get("check")))
    cc = network.get("cc") or added.get("probe_cc") or "ZZ"
    asn = network.get("asn") if network.get("asn") is not None else added.get("probe_asn")
    as_org = network.get("as_org") or added.get("probe_as_org")
    unreadable = False
    try:
        started = parse_time(record.get("started_at")).astimezone(UTC)
    except (ValueError, TypeError, OverflowError):  # stored before ingest checked the form
        if filed_at is None:
            raise ValueError(f"started_at {str(record.get('started_at'))[:40]!r} is not an "
                             "RFC 3339 time") from None
        started = (filed_at if filed_at.tzinfo else filed_at.replace(tzinfo=UTC)
                   ).astimezone(UTC)
        unreadable = True
    uid = str(record["id"]).replace("-", "")
    verdict = record.get("verdict")
    blocking: Any = (record.get("blocking") if verdict in ("blocked", "throttled")
                     else False if verdict == "open" else None)
    annotations = {"engine_name": "voipwatch", "voipwatch_link_type": str(network.get("link_type")),
                   "voipwatch_service": str(record.get("service")),
                   "voipwatch_role": str(endpoint.get("role"))}
    if network.get("link_type") in NETWORK_TYPE:
        annotations["network_type"] = NETWORK_TYPE[network["link_type"]]
    if network.get("replay"):
        annotations["voipwatch_replay"] = "true"  # a lab replay, not a real measurement
    if unreadable:  # the time is the collector's reading, not the record's own words
        annotations["voipwatch_started_at"] = "collector"
    signed = {key: value for key, value in record.items() if key != "evidence"}
    return {
        "annotations": annotations,
        "data_format_version": DATA_FORMAT_VERSION,
        "input": _input(endpoint),
        "measurement_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "measurement_uid": f"{started:%Y%m%d%H%M%S.%f}_{cc}_{name}_{uid[:16]}",
        "probe_asn": _asn(asn),
        "probe_cc": cc,
        "probe_ip": "127.0.0.1",  # OONI's placeholder: no probe address is ever exported here
        "probe_network_name": as_org,
        "report_id": f"{started:%Y%m%dT%H%M%SZ}_{name}_{cc}_{_asn(asn)[2:]}_n1_{uid[:16]}",
        "resolver_asn": (_asn(network["resolver_asn"]) if network.get("resolver_asn")
                         is not None else None),
        "resolver_ip": None,
        "software_name": SOFTWARE_NAME,
        "software_version": str((record.get("probe") or {}).get("software_version")),
        "test_helpers": None,
        "test_name": name,
        "test_runtime": _runtime(record.get("runtime_ms")),
        "test_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_version": str(evidence.get("check_version") or "1"),
        "test_keys": {
            "failure": evidence.get("failure"),
            "accessible": True if verdict == "open" else False if verdict == "blocked" else None,
            "blocking": blocking,
            "verdict": verdict,
            "service": record.get("service"),
            "role": endpoint.get("role"),
            "endpoint": endpoint,
            "evidence": evidence,
            "voipwatch_record": signed,
            "voipwatch_collector": added,
        },
    }


def _time(value: datetime | None) -> str | None:
    from probe.core.record import rfc3339

    return rfc3339(value) if value is not None else None


def lines(chunks: Iterable[list[sa.Row[Any]]], include_ip: bool = False) -> Iterator[bytes]:
    """JSONL of OONI measurements, chunk by chunk (constant memory). Submitting
    addresses are never exported in this format, whatever `include_ip` says.
    A record that cannot be mapped is left out and logged, never the rest."""
    skipped: list[str] = []
    for rows in chunks:
        out = []
        for row in rows:
            line = _line(row)
            if line is None:
                skipped.append(str(row.id))
            else:
                out.append(line)
        yield b"".join(out)
    if skipped:
        log.warning("OONI export: %d records left out, they cannot be mapped (ids: %s%s)",
                    len(skipped), ", ".join(skipped[:10]), ", ..." if len(skipped) > 10 else "",
                    extra={"skipped": len(skipped)})


def _line(row: sa.Row[Any]) -> bytes | None:
    """One OONI line for a stored record, None when it cannot be mapped."""
    added = {"received_at": _time(row.received_at), "probe_cc": row.cc,
             "probe_asn": row.asn, "probe_as_org": row.as_org,
             "public_key": row.public_key, "key_revoked_at": _time(row.key_revoked_at)}
    try:
        data = measurement(orjson.loads(row.record), added, row.started_at)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        log.warning("OONI export: record %s left out: %s", row.id, exc)
        return None
    try:
        return orjson.dumps(data) + b"\n"
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        pass
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode() + b"\n"
    except (ValueError, TypeError, RecursionError) as exc:
        log.warning("OONI export: record %s left out: %s", row.id, exc)
        return None
