"""The collector's own Ed25519 key: it signs receipts and the transparency
log's tree heads (docs/evidence.md). Made on first start, kept in the data
directory as `collector.key` (PKCS#8 PEM, mode 0600), published at
`GET /api/v1/collector` and pinned by probes at registration.

Losing it does not lose data, but every probe must then confirm the new key
(`voipwatch-probe register --accept-new-collector-key`) and old receipts stay
verifiable only with the old public key: back it up with the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nacl.signing import SigningKey

from probe.core.errors import UserError
from probe.core.signing import ProbeKey, key_id_of, load_key, write_key

KEY_FILE = "collector.key"


@dataclass(frozen=True)
class CollectorKey:
    signing: SigningKey  # PyNaCl's: the fastest signer here, on the ingest path

    @property
    def public_raw(self) -> bytes:
        return bytes(self.signing.verify_key)

    @property
    def public_b64(self) -> str:
        import base64

        return base64.b64encode(self.public_raw).decode()

    @cached_property  # on every receipt
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    def sign(self, data: bytes) -> bytes:
        return self.signing.sign(data).signature

    def public(self) -> dict[str, str]:
        return {"public_key": self.public_b64, "key_id": self.key_id, "alg": "ed25519"}


def load_or_create(data_dir: Path) -> CollectorKey:
    """The key in `data_dir`, made there (0600) when there is none yet. Several
    workers starting at once make one key: the first write wins (O_EXCL)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        try:
            write_key(ProbeKey.generate(), path)
        except UserError:
            if not path.exists():
                raise
    key = load_key(path)
    mode = path.stat().st_mode & 0o077
    if mode:
        raise UserError(f"{path}: the collector key is readable by others "
                        f"(mode {oct(path.stat().st_mode & 0o777)}); chmod 600 it")
    raw = key.private.private_bytes_raw()
    return CollectorKey(SigningKey(raw))


__all__ = ["KEY_FILE", "CollectorKey", "load_or_create"]
