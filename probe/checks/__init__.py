"""The check registry. Modules are imported on first use, so a run that has no
`webrtc` endpoint never pays for importing aiortc."""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY: dict[str, str] = {
    "dns": "probe.checks.dns",
    "tcp": "probe.checks.tcp",
    "tls": "probe.checks.tls",
    "stun": "probe.checks.stun",
    "turn": "probe.checks.turn",
    "sip": "probe.checks.sip",
    "webrtc": "probe.checks.webrtc.check",
    "throttle": "probe.checks.throttle.check",
}

# Checks that measure bandwidth run alone, after everything else.
EXCLUSIVE = frozenset({"throttle"})


def get(name: str) -> ModuleType:
    try:
        return importlib.import_module(REGISTRY[name])
    except KeyError:
        raise LookupError(f"unknown check {name!r}") from None
