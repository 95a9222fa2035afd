"""`tls`: TCP connect, then a TLS handshake with SNI, then a short quiet read.

Tells apart a reset or timeout during the handshake from one just after it
(some middleboxes let the handshake finish and kill the flow once they have
seen the certificate), and records why a certificate fails validation: a
certificate that fails is evidence (a block page, an interception proxy),
never a crash.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from typing import Any

from probe.checks.base import Context, Observation, Operation, carried
from probe.checks.results import finish, open_flow, resolve
from probe.core.errors import StepFailed
from probe.core.failures import CERT_FAILURES, Failure
from probe.core.record import Transport

NAME = "tls"
VERSION = "1"
DEFAULT_TIMEOUT = 6.0
POST_HANDSHAKE_WAIT = 0.3  # seconds to listen for a reset right after the handshake

async def run(endpoint: Any, ctx: Context) -> Observation:
    address, failed = await resolve(endpoint, ctx)
    if failed:
        return failed
    assert address is not None
    return await handshake(address, endpoint.port, endpoint.sni or endpoint.host, ctx)


async def handshake(address: str, port: int, sni: str, ctx: Context,
                    post_wait: float = POST_HANDSHAKE_WAIT) -> Observation:
    deadline = time.monotonic() + ctx.timeout
    try:
        flow = await open_flow(address, port, Transport.TLS, ctx, sni=sni, deadline=deadline,
                               framer=len)
    except StepFailed as exc:
        observation = carried(exc)
        if observation.failure in CERT_FAILURES:
            remaining = max(deadline - time.monotonic(), 1.0)
            observation.evidence["certificate"] = await _unverified_certificate(
                address, port, sni, remaining)
        return observation

    assert flow.streams is not None
    reader, writer = flow.streams
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        flow.evidence.update(cipher=ssl_object.cipher()[0],
                             certificate=_summary(ssl_object.getpeercert(binary_form=True)))
    after = await _listen(reader, post_wait) if post_wait > 0 else "not_checked"
    flow.evidence["after_handshake"] = after
    if after == "reset":
        return finish(flow, Observation.failed(Failure.CONNECTION_RESET,
                                               Operation.TLS_AFTER_HANDSHAKE,
                                               phase="after_handshake"))
    return finish(flow, Observation.ok())


async def _listen(reader: asyncio.StreamReader, seconds: float) -> str:
    try:
        data = await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return "quiet"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except (OSError, ssl.SSLError):
        return "error"
    return "data" if data else "eof"


def _summary(der: bytes | None) -> dict[str, Any] | None:
    if not der:
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    def first(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
        values = name.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = sans.value.get_values_for_type(x509.DNSName)[:10]
        except x509.ExtensionNotFound:
            names = []
        return {
            "subject_cn": first(cert.subject, NameOID.COMMON_NAME),
            "issuer_cn": first(cert.issuer, NameOID.COMMON_NAME),
            "issuer_o": first(cert.issuer, NameOID.ORGANIZATION_NAME),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dns_names": names,
            "sha256": hashlib.sha256(der).hexdigest(),
        }
    except ValueError:  # also raised late: cryptography parses a field when it is read
        return {"sha256": hashlib.sha256(der).hexdigest(), "parse_error": True}


async def _unverified_certificate(address: str, port: int, sni: str,
                                  timeout: float) -> dict[str, Any] | None:
    """Fetch the certificate that failed validation, to record what it was."""
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust store to load: none used
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=insecure, server_hostname=sni), timeout
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return _summary(ssl_object.getpeercert(binary_form=True)) if ssl_object else None
    finally:
        writer.transport.abort()
