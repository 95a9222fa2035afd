"""Signed requests from a probe to the collector (control, reference peer,
reflector), both sides: the probe signs (`sign_request`), the collector
verifies (`verify_request`, collector/auth.py).

The probe signs `METHOD\\nPATH\\nUNIX_TIME\\nSHA256_HEX(BODY)` with its key; the
collector checks that the key is registered and not revoked, and that the time
is within `MAX_SKEW` seconds.
"""

from __future__ import annotations

import base64
import binascii
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


def verify_request(public_raw: bytes, method: str, path: str, timestamp: str, body: bytes,
                   signature: str) -> bool:
    """Whether `signature` (base64) is the Ed25519 signature of this request by
    the key `public_raw`."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        VerifyKey(public_raw).verify(request_message(method, path, timestamp, body),
                                     base64.b64decode(signature, validate=True))
    except (BadSignatureError, binascii.Error, ValueError):
        return False
    return True


def within_skew(timestamp: int, now: float | None = None) -> bool:
    """Whether a request's Unix time is within MAX_SKEW seconds of `now`."""
    return abs((now if now is not None else time.time()) - timestamp) <= MAX_SKEW


def header_refusal(key_id: str | None, stamp: str | None,
                   signed: bool) -> tuple[str, str] | None:
    """Why a request's signature headers cannot be checked at all, as the
    collector's (error code, detail); None when they can (the key is looked up
    and the signature verified next)."""
    if not (key_id and stamp and signed):
        return "unsigned_request", (f"sign the request ({HEADER_KEY}, {HEADER_TIME}, "
                                    f"{HEADER_SIGNATURE}); see probe/core/auth.py")
    try:
        moment = int(stamp)
    except ValueError:
        return "stale_request", f"{HEADER_TIME} is not a Unix time"
    if not within_skew(moment):
        return "stale_request", (f"{HEADER_TIME} is more than {MAX_SKEW} s away from the "
                                 "collector's clock")
    return None
