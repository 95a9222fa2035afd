"""Signed requests from registered probes: a FastAPI dependency for any route
that only probes may use (the test helper, the WebRTC reference peer, the
throttling reflector).

The probe signs `METHOD\\nPATH\\nUNIX_TIME\\nSHA256_HEX(BODY)` with its Ed25519
key (`probe/core/auth.py`) and sends `X-Voipwatch-Key`, `X-Voipwatch-Time` and
`X-Voipwatch-Signature`. Usage in a router::

    from collector.auth import SignedProbe

    @router.post("/api/v1/webrtc/offer")
    async def offer(probe: SignedProbe, ...) -> ...:
        probe.key_id  # a registered, unrevoked key

Missing, stale or bad signatures and unknown keys get 401; revoked keys 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from collector.errors import ApiError
from collector.keys import ProbeRow
from collector.services import Services, get_services
from probe.core.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIME,
    header_refusal,
    verify_request,
)


def _unauthorised(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail, headers={"WWW-Authenticate": "Voipwatch-Signature"})


async def signed_probe(request: Request,
                       services: Annotated[Services, Depends(get_services)]) -> ProbeRow:
    verified = request.scope.get("state", {}).get("probe")
    if isinstance(verified, ProbeRow):  # the gate verified it on the raw body (collector/gate.py)
        return verified
    key_id = request.headers.get(HEADER_KEY)
    stamp = request.headers.get(HEADER_TIME)
    signature = request.headers.get(HEADER_SIGNATURE)
    refusal = header_refusal(key_id, stamp, bool(signature))
    if refusal is not None:
        raise _unauthorised(*refusal)
    assert key_id and stamp and signature  # header_refusal said they are there
    probe = await run_in_threadpool(services.keys.get, key_id)
    if probe is None:
        raise _unauthorised("unknown_key", "this key is not registered "
                            "(voipwatch-probe register --collector URL)")
    if probe.revoked:
        raise ApiError(403, "revoked_key", "this key was revoked")
    body = await request.body()
    if not verify_request(probe.public_raw, request.method, request.url.path, stamp, body,
                          signature):
        raise _unauthorised("bad_signature", "the request signature does not verify")
    return probe


SignedProbe = Annotated[ProbeRow, Depends(signed_probe)]
