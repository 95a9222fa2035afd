from __future__ import annotations

import copy
import json
import os
import stat
from typing import Any

import pytest

from probe.core.errors import UserError
from probe.core.signing import (
    ProbeKey,
    SignatureError,
    canonical_bytes,
    key_id_of,
    load_key,
    verify_record,
    write_key,
)


def sample_record(key: ProbeKey) -> dict[str, Any]:
    return {
        "schema": "voipwatch.measurement/1",
        "id": "0b7c5e4e-4a43-4c1f-9d51-6e5d2b1a9f00",
        "started_at": "2016-01-07T09:30:00.000Z",
        "runtime_ms": 152,
        "probe": {"key_id": key.key_id, "software_version": "0.1.0",
                  "public_key": key.public_b64},
        "network": {"link_type": "cellular"},
        "service": "whatsapp",
        "endpoint": {"check": "stun", "host": "stun.example.net", "port": 3478,
                     "transport": "udp", "role": "call"},
        "verdict": "blocked",
        "blocking": "stun.no_response",
        "evidence": {"attempts": [{"rtt_ms": None, "failure": "generic_timeout_error"}],
                     "ratio": 0.25, "ok": False, "notes": "é ü 🙂"},
    }


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, (*path, i))]
    return [path]


def mutate(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return "x"
    return str(value) + "x"


def test_key_id_is_sha256_of_raw_public_key(probe_key: ProbeKey) -> None:
    import hashlib

    assert probe_key.key_id == hashlib.sha256(probe_key.public_raw).hexdigest()
    assert len(probe_key.public_raw) == 32
    assert key_id_of(probe_key.public_raw) == probe_key.key_id


def test_signature_is_over_jcs_without_signature(probe_key: ProbeKey) -> None:
    signed = probe_key.sign(sample_record(probe_key))
    assert signed["signature"]["alg"] == "ed25519"
    assert signed["signature"]["key_id"] == probe_key.key_id
    verify_record(signed, probe_key.public_raw)
    # JCS: sorted keys, no whitespace, UTF-8 (not \\u escapes)
    data = canonical_bytes(signed)
    assert data.startswith(b'{"blocking":"stun.no_response","endpoint":{"check":"stun"')
    assert "🙂".encode() in data and b"signature" not in data


def test_round_trip_through_json_text(probe_key: ProbeKey) -> None:
    signed = probe_key.sign(sample_record(probe_key))
    verify_record(json.loads(json.dumps(signed, indent=2)), probe_key.public_raw)


def test_changing_any_single_field_breaks_the_signature(probe_key: ProbeKey) -> None:
    signed = probe_key.sign(sample_record(probe_key))
    paths = [p for p in leaves(signed) if p[0] != "signature"]
    assert len(paths) > 15
    for path in paths:
        tampered = copy.deepcopy(signed)
        target = tampered
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = mutate(target[path[-1]])
        with pytest.raises(SignatureError) as caught:
            verify_record(tampered, probe_key.public_raw)
        assert caught.value.reason == "bad_signature", path


def test_adding_or_removing_a_field_breaks_the_signature(probe_key: ProbeKey) -> None:
    signed = probe_key.sign(sample_record(probe_key))
    added = {**signed, "extra": 1}
    removed = {k: v for k, v in signed.items() if k != "blocking"}
    for tampered in (added, removed):
        with pytest.raises(SignatureError):
            verify_record(tampered, probe_key.public_raw)


def test_another_key_does_not_verify(probe_key: ProbeKey) -> None:
    signed = probe_key.sign(sample_record(probe_key))
    other = ProbeKey.generate()
    with pytest.raises(SignatureError) as caught:
        verify_record(signed, other.public_raw)
    assert caught.value.reason == "key_mismatch"
    forged = other.sign(sample_record(probe_key))
    forged["signature"]["key_id"] = probe_key.key_id
    with pytest.raises(SignatureError, match="bad_signature"):
        verify_record(forged, probe_key.public_raw)


def test_key_file_is_private_and_never_overwritten(tmp_path, probe_key: ProbeKey) -> None:
    path = tmp_path / "keys" / "probe.key"
    assert write_key(probe_key, path) is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path).key_id == probe_key.key_id
    with pytest.raises(UserError, match="refusing to overwrite"):
        write_key(ProbeKey.generate(), path)
    assert load_key(path).key_id == probe_key.key_id
    replacement = ProbeKey.generate()
    backup = write_key(replacement, path, force=True)
    assert backup is not None and load_key(backup).key_id == probe_key.key_id
    assert load_key(path).key_id == replacement.key_id


def test_bad_key_files_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="no probe key"):
        load_key(tmp_path / "missing.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(UserError, match="not a PEM Ed25519 private key"):
        load_key(garbage)
