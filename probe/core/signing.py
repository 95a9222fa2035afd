"""Ed25519 keys and record signatures.

A signature covers the RFC 8785 (JCS) canonical JSON of the record without its
`signature` member; `key_id` is the hex SHA-256 of the raw 32-byte public key.
Signing uses `cryptography` (key files are standard PKCS#8 PEM); verification
uses PyNaCl, which checks about twice as many signatures per second on the
collector's hot path. Both implement the same RFC 8032 algorithm.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe.core.canonical import canonical_bytes
from probe.core.errors import SignatureError, UserError


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


@dataclass(frozen=True)
class ProbeKey:
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    def sign_bytes(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()

    def sign(self, record: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of `record` with a fresh `signature`."""
        signed = {k: v for k, v in record.items() if k != "signature"}
        signed["signature"] = {
            "alg": "ed25519",
            "key_id": self.key_id,
            "value": self.sign_bytes(canonical_bytes(signed)),
        }
        return signed

    @classmethod
    def generate(cls) -> ProbeKey:
        return cls(Ed25519PrivateKey.generate())


def write_key(key: ProbeKey, path: Path, *, force: bool = False) -> Path | None:
    """Store the key 0600. An existing key is never replaced silently: without
    `force` this refuses; with it, the old key is kept beside as `.bak-N`."""
    backup = None
    if path.exists():
        if not force:
            raise UserError(
                f"a key already exists at {path}; refusing to overwrite it "
                "(use --force to replace it, the old key is kept as a backup)"
            )
        n = 1
        while path.with_name(f"{path.name}.bak-{n}").exists():
            n += 1
        backup = path.with_name(f"{path.name}.bak-{n}")
        os.replace(path, backup)
    pem = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UserError(f"cannot write the key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return backup


def load_key(path: Path) -> ProbeKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UserError(
            f"no probe key at {path}; create one with `voipwatch-probe keygen`"
        ) from exc
    except OSError as exc:
        raise UserError(f"cannot read the key file {path}: {exc.strerror}") from exc
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is not a PEM Ed25519 private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise UserError(f"{path} holds a key that is not Ed25519")
    return ProbeKey(private)


def decode_public_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("bad_public_key", "not base64") from exc
    if len(raw) != 32:
        raise SignatureError("bad_public_key", f"{len(raw)} bytes, expected 32")
    return raw


def verify_record(record: dict[str, Any], public_raw: bytes) -> None:
    """Raise SignatureError unless `record` carries a valid signature by `public_raw`."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    signature = record.get("signature")
    if not isinstance(signature, dict):
        raise SignatureError("no_signature")
    if signature.get("alg") != "ed25519":
        raise SignatureError("bad_signature", "alg is not ed25519")
    if signature.get("key_id") != key_id_of(public_raw):
        raise SignatureError("key_mismatch", "key_id is not the SHA-256 of the public key")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("bad_signature", "value is not base64") from exc
    try:
        data = canonical_bytes(record)
    except (TypeError, ValueError, RecursionError) as exc:  # CanonicalizationError is one
        raise SignatureError("bad_signature", "record cannot be canonicalised") from exc
    try:
        VerifyKey(public_raw).verify(data, value)
    except (BadSignatureError, ValueError) as exc:
        raise SignatureError("bad_signature", "signature does not match the record") from exc
