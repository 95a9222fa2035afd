"""The collector's signed word and the transparency log's leaves, shared by the
collector (which makes them) and the probe (`upload`, `audit`, `verify-export`,
which check them). docs/evidence.md explains the chain.

- `record_sha256`: the hex SHA-256 of the RFC 8785 form of a whole signed
  record, signature included: one value per record, whatever whitespace or
  key order it travelled with.
- Signed objects (receipts, tree heads): `signature` = `{alg, key_id, value}`,
  Ed25519 over the RFC 8785 form of the object without `signature`, as records.
- Leaves: what the log commits to per record: its hash and the fields exports
  filter on, so a verifier can re-apply a filter to the whole log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from probe.core.canonical import dumps
from probe.core.errors import SignatureError
from probe.core.signing import key_id_of

LEAF_SCHEMA = "voipwatch.leaf/1"
# the leaf's fields that the signed record itself determines (the rest is the
# collector's: the attribution it used when the record carried none)
RECORD_LEAF_FIELDS = ("id", "key_id", "service", "check", "role", "verdict", "link_type",
                      "upstream", "started_at")
SIGNED_ATTRIBUTION = ("control", "local")


def record_sha256(record: dict[str, Any], *, parsed: bool = False) -> str:
    return hashlib.sha256(dumps(record, parsed=parsed)).hexdigest()


def leaf_time(moment: datetime) -> str:
    """started_at in a leaf: UTC, microseconds, `Z` (sorts as it compares)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> datetime:
    """A time with its zone, as leaves, filters and records write them;
    ValueError saying why for anything else (never another exception)."""
    if not isinstance(text, str):
        raise ValueError(f"{_shown(text)} is not a time string")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{_shown(text)} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{_shown(text)} has no time zone")
    return moment


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _claimed_time(value: Any) -> str | None:
    """A record's started_at as its leaf states it; None when it has none, or
    one no time can be read from (collectors took Unix times, "1795958016" or
    1795958016, before ingest held started_at to RFC 3339)."""
    if not isinstance(value, str):
        return None
    try:
        return leaf_time(parse_time(value))
    except (ValueError, OverflowError):
        return None


def leaf_of(record: dict[str, Any], digest: str, cc: str | None, asn: int | None,
            attribution: str) -> dict[str, Any]:
    """The log leaf of a stored record: its hash, the filterable fields it signs,
    and the country/AS the collector files it under (`attribution`: `control` or
    `local` when the record signed them, `collector` for the upload address's
    look-up, `none`)."""
    out = record_claims(record)
    out.update(schema=LEAF_SCHEMA, record_sha256=digest, cc=cc, asn=asn,
               attribution=attribution)
    return out


def record_claims(record: dict[str, Any]) -> dict[str, Any]:
    """The leaf fields a signed record determines by itself."""
    endpoint = record.get("endpoint") or {}
    network = record.get("network") or {}
    return {
        "id": _uuid(record.get("id")),
        "key_id": (record.get("probe") or {}).get("key_id"),
        "service": record.get("service"),
        "check": endpoint.get("check"),
        "role": endpoint.get("role"),
        "verdict": record.get("verdict"),
        "link_type": network.get("link_type"),
        "upstream": network.get("upstream"),  # absent from earlier probes: null
        "started_at": _claimed_time(record.get("started_at")),
    }


class DatasetHash:
    """`dataset_sha256` taken one record_sha256 at a time, in log order: a
    country's ten million records are never held at once."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add(self, digest: str) -> None:
        self._sha.update(f"{digest}\n".encode())

    def update(self, digests: Iterable[str]) -> None:
        """A chunk's digests at once (the caller holds the chunk anyway)."""
        self._sha.update("".join([f"{digest}\n" for digest in digests]).encode())

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def dataset_sha256(digests: Iterable[str]) -> str:
    """The hash of a set of records: SHA-256 of their record_sha256 values, one
    per line (hex, each followed by a newline), in log order."""
    hashed = DatasetHash()
    for digest in digests:
        hashed.add(digest)
    return hashed.hexdigest()


def _uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))  # the collector's form: lower case, hyphens
    except ValueError:
        return str(value)


def leaf_bytes(leaf: dict[str, Any]) -> bytes:
    return dumps(leaf)


def leaf_problems(leaf: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """Where a leaf misstates the record it names (empty: it does not)."""
    problems = []
    claims = record_claims(record)
    started = record.get("started_at")
    if started is not None and claims["started_at"] is None:
        # stored before the collector checked the form: no reader can date it alike
        problems.append(f"started_at {_shown(started)} in the record is not an RFC 3339 "
                        f"time with a time zone (the log has {leaf.get('started_at')!r})")
    for name in RECORD_LEAF_FIELDS:
        if name == "started_at" and started is not None and claims[name] is None:
            continue
        if leaf.get(name) != claims[name]:
            problems.append(f"{name} is {leaf.get(name)!r} in the log, {claims[name]!r} "
                            "in the record")
    network = record.get("network") or {}
    if network.get("attribution") in SIGNED_ATTRIBUTION and (
            network.get("cc") or network.get("asn") is not None):
        for name in ("cc", "asn"):
            if leaf.get(name) != network.get(name):
                problems.append(f"{name} is {leaf.get(name)!r} in the log, signed "
                                f"{network.get(name)!r} in the record")
        if leaf.get("attribution") != network.get("attribution"):
            problems.append("the log does not file the record under its signed attribution")
    return problems


@dataclass(frozen=True)
class LeafFilter:
    """An export's filters, applied to leaves (the collector applies the same
    ones to its columns, collector/store.py)."""

    service: str | None = None
    verdict: str | None = None
    link_type: str | None = None
    cc: str | None = None
    asn: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    check: str | None = None
    role: str | None = None
    key_id: str | None = None
    upstream: str | None = None  # a leaf without one counts as `unknown`

    def matches(self, leaf: dict[str, Any]) -> bool:
        for name in ("service", "verdict", "link_type", "check", "role", "key_id", "asn"):
            wanted = getattr(self, name)
            if wanted is not None and leaf.get(name) != wanted:
                return False
        if self.cc is not None and leaf.get("cc") != self.cc.upper():
            return False
        if self.upstream is not None and (leaf.get("upstream") or "unknown") != self.upstream:
            return False
        if self.since is not None or self.until is not None:
            try:
                started = parse_time(leaf.get("started_at"))
            except ValueError:  # no time: in no time range
                return False
            if self.since is not None and started < self.since:
                return False
            if self.until is not None and started >= self.until:
                return False
        return True

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("service", "verdict", "link_type", "cc", "asn", "check", "role",
                     "key_id", "upstream"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                out[name] = leaf_time(moment)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeafFilter:
        values = dict(data)
        for name in ("since", "until"):
            if values.get(name) is not None:
                values[name] = parse_time(values[name])
        return cls(**values)


def sign_object(obj: dict[str, Any], key_id: str, sign: Callable[[bytes], bytes]
                ) -> dict[str, Any]:
    """`obj` with a `signature` by the key `key_id` (`sign`: raw Ed25519)."""
    body = {k: v for k, v in obj.items() if k != "signature"}
    value = base64.b64encode(sign(dumps(body))).decode()
    return {**body, "signature": {"alg": "ed25519", "key_id": key_id, "value": value}}


def verify_object(obj: Any, public_raw: bytes, what: str = "object") -> None:
    """Raise SignatureError unless `obj` carries a valid signature by `public_raw`."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if not isinstance(obj, dict):
        raise SignatureError("not_an_object", f"the {what} is not a JSON object")
    signature = obj.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != "ed25519":
        raise SignatureError("no_signature", f"the {what} carries no Ed25519 signature")
    if signature.get("key_id") != key_id_of(public_raw):
        raise SignatureError("key_mismatch", f"the {what} is signed by another key "
                             f"({str(signature.get('key_id'))[:16]}...)")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        VerifyKey(public_raw).verify(dumps({k: v for k, v in obj.items() if k != "signature"}),
                                     value)
    except (binascii.Error, BadSignatureError, ValueError, TypeError) as exc:
        raise SignatureError("bad_signature", f"the {what}'s signature does not verify"
                             ) from exc


def head_hashes(head: dict[str, Any]) -> tuple[int, bytes]:
    """(tree_size, root) of a signed tree head; ValueError when malformed."""
    size, root = head.get("tree_size"), head.get("root_hash")
    if not isinstance(size, int) or size < 0 or not isinstance(root, str):
        raise ValueError("a tree head needs tree_size and root_hash")
    return size, bytes.fromhex(root)


def hexes(values: Any) -> list[bytes]:
    """A proof's hex hashes; ValueError when malformed."""
    if not isinstance(values, list):
        raise ValueError("a proof is a list of hex hashes")
    out = [bytes.fromhex(v) for v in values]
    if any(len(v) != 32 for v in out):
        raise ValueError("a proof hash is 32 bytes")
    return out


PROOF_SCHEMA = "voipwatch.export-proof/1"

__all__ = ["LEAF_SCHEMA", "PROOF_SCHEMA", "LeafFilter", "dataset_sha256", "head_hashes",
           "hexes", "leaf_bytes", "leaf_of", "leaf_problems", "leaf_time", "record_claims",
           "record_sha256", "sign_object", "verify_object"]

