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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

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


def _started(record: dict[str, Any]) -> datetime:
    text = str(record["started_at"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).astimezone(UTC)


def _asn(value: Any) -> str:
    return f"AS{value}" if isinstance(value, int) and not isinstance(value, bool) else "AS0"


def measurement(record: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """The OONI measurement of one signed record; `added` is what the collector
    added (`received_at`, `probe_cc`, `probe_asn`, `probe_as_org`, `public_key`,
    `key_revoked_at`)."""
    endpoint = record.get("endpoint") or {}
    network = record.get("network") or {}
    evidence = record.get("evidence") or {}
    name = test_name(str(endpoint.get("check")))
    cc = network.get("cc") or added.get("probe_cc") or "ZZ"
    asn = network.get("asn") if network.get("asn") is not None else added.get("probe_asn")
    as_org = network.get("as_org") or added.get("probe_as_org")
    started = _started(record)
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
        "test_runtime": round(int(record.get("runtime_ms") or 0) / 1000, 3),
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
    addresses are never exported in this format, whatever `include_ip` says."""
    for rows in chunks:
        out = []
        for row in rows:
            added = {"received_at": _time(row.received_at), "probe_cc": row.cc,
                     "probe_asn": row.asn, "probe_as_org": row.as_org,
                     "public_key": row.public_key, "key_revoked_at": _time(row.key_revoked_at)}
            out.append(orjson.dumps(measurement(orjson.loads(row.record), added)) + b"\n")
        yield b"".join(out)
