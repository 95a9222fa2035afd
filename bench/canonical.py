"""RFC 8785 bytes per second (`make bench`): probe.core.canonical's orjson path
(on a plain record, and on one parsed by collector.batch) as ratios of the
reference `rfc8785` package, on a typical signed record, in the same run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rfc8785  # noqa: E402

from collector.batch import parse_batch  # noqa: E402
from probe.core.canonical import canonical_bytes  # noqa: E402

ROUNDS = 20000


def record() -> dict[str, Any]:
    return {
        "schema": "voipwatch.measurement/1", "id": "0b6f5a2e-8f7e-4c1e-9f0e-2d1c3b4a5968",
        "started_at": "2016-01-07T09:30:00.123Z", "runtime_ms": 412,
        "probe": {"key_id": "a" * 64, "software_version": "0.1.0", "public_key": "B" * 44},
        "network": {"link_type": "cellular", "link_type_source": "auto"},
        "service": "whatsapp",
        "endpoint": {"check": "stun", "host": "stun.example.net", "port": 3478,
                     "transport": "udp", "role": "call"},
        "verdict": "blocked", "blocking": "stun.no_response",
        "evidence": {"attempts": [{"sent_ms": 0.0}, {"sent_ms": 500.412},
                                  {"sent_ms": 1500.9}], "address": "192.0.2.7",
                     "transport": "udp", "phase": "request", "status": "failed",
                     "failure": "generic_timeout_error", "suspected": "stun.no_response",
                     "rule": "fails_where_control_works", "check_version": "1",
                     "bytes_sent": 168, "bytes_received": 0,
                     "control": {"state": "ok", "failure": None,
                                 "evidence": {"rtt_ms": 12.5,
                                              "attributes": ["XOR-MAPPED-ADDRESS"]}},
                     "connectivity": {"ok": True, "target": "collector.example.org:443"}},
    }


def rate(make: Any) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        make()
    return ROUNDS / (time.perf_counter() - start)


def main() -> None:
    plain = record()
    (element,) = parse_batch(("[" + json.dumps(plain) + "]").encode())
    assert element.fast
    reference = rfc8785.dumps(plain)
    assert canonical_bytes(plain) == reference == canonical_bytes(element.value, parsed=True)
    base = rate(lambda: rfc8785.dumps(plain))
    walked = rate(lambda: canonical_bytes(plain))
    parsed = rate(lambda: canonical_bytes(element.value, parsed=True))
    print(f"rfc8785 (reference): {base:,.0f} records/s")
    print(f"canonical_bytes, plain record: {walked:,.0f}/s (x{walked / base:.1f})")
    print(f"canonical_bytes, batch-parsed record: {parsed:,.0f}/s (x{parsed / base:.1f})")


if __name__ == "__main__":
    main()
