"""Signed requests from a probe to the collector (control, reference peer, reflector).

The probe signs `METHOD\\nPATH\\nUNIX_TIME\\nSHA256_HEX(BODY)` with its key; the
collector checks that the key is registered and not revoked, and that the time
is within `MAX_SKEW` seconds.
"""

from __future__ import annotations

import hashlib
import time

from probe.core.signing import ProbeKey

HEADER_KEY = "X-Voipwatch-Key"
HEADER_TIME = "X-Voipwatch-Time"
HEADER_SIGNATURE = "X-Voipwatch-Signature"
MAX_SKEW = 300


def request_message(method: str, path: str, timestamp: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign_request(key: ProbeKey, method: str, path: str, body: bytes,
                 now: float | None = None) -> dict[str, str]:
    timestamp = str(int(now if now is not None else time.time()))
    return {
        HEADER_KEY: key.key_id,
        HEADER_TIME: timestamp,
        HEADER_SIGNATURE: key.sign_bytes(request_message(method, path, timestamp, body)),
    }
