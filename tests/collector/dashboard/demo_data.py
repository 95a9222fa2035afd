"""The Morocco 2016 replay's records without the lab: the same seed, phases,
dates (deploy.lab.demo.moments, `make demo`'s two passes per phase), link
types and lab catalogue endpoints, each record signed by one of two probe keys
(cellular, ADSL) with the verdict the lab produces for it: in a phase that
blocks calls on a link, the call path's STUN, TURN, SIP and direct WebRTC
checks are `blocked` (WebRTC through the unreachable relay `inconclusive`),
its DNS and the collector's throttle reflector `open`; messaging is always
open. Records carry `network.replay` like the demo's. tests/lab/test_demo.py
checks the same against the real lab (root)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from deploy.lab.demo import LINKS, load_seed, moments
from probe.catalogue import endpoint_ref, load_catalogue
from probe.core.record import rfc3339
from probe.core.signing import ProbeKey
from tests.conftest import ROOT

METHOD = {"stun": "stun.no_response", "turn": "turn.no_response", "sip": "sip.no_response",
          "tcp": "tcp.timeout", "tls": "tls.timeout", "webrtc": "webrtc.ice"}


def _verdict(ref: dict[str, Any], blocked: bool) -> tuple[str, str | None]:
    if not blocked or ref["role"] != "call" or ref["check"] in ("dns", "throttle"):
        return "open", None
    if ref["check"] == "webrtc" and ref.get("label") != "direct":
        return "inconclusive", None
    return "blocked", METHOD[ref["check"]]


def demo_records(keys: dict[str, ProbeKey], passes: int = 2) -> list[dict[str, Any]]:
    catalogue = load_catalogue(Path(ROOT / "configs" / "lab-catalogue.yaml"))
    out = []
    for phase in load_seed().phases:
        for moment in moments(phase, passes):
            for link in LINKS:
                key = keys[str(link)]
                blocked = "call" in [str(r) for r in phase.blocked.get(link, [])]
                for n, (service, endpoint) in enumerate(
                        (s.id, e) for s in catalogue.services for e in s.endpoints):
                    ref = endpoint_ref(endpoint)
                    verdict, method = _verdict(ref, blocked)
                    started = moment + dt.timedelta(seconds=n)
                    out.append(key.sign({
                        "schema": "voipwatch.measurement/1", "id": str(uuid.uuid4()),
                        "started_at": rfc3339(started), "runtime_ms": 40,
                        "probe": {"key_id": key.key_id, "software_version": "0.1.0",
                                  "public_key": key.public_b64},
                        "network": {"link_type": str(link), "replay": True},
                        "lab_clock": {"clock": rfc3339(moment),
                                      "real_started_at": rfc3339(dt.datetime.now(dt.UTC))},
                        "service": service, "endpoint": ref, "verdict": verdict,
                        "blocking": method,
                        "evidence": {"rule": "test-replay", "control": {"state": "ok"}}}))
    return out


SEED_CHANGES = {  # (service, role, link) -> [(kind, day)], from seeds/morocco-2016.yaml
    (service, "call", "cellular"): [("start", "2016-01-07"), ("end", "2016-11-04")]
    for service in ("lumen", "parla")} | {
    (service, "call", "adsl"): [("start", "2016-02-22"), ("end", "2016-11-04")]
    for service in ("lumen", "parla")}
