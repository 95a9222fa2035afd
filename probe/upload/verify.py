"""`voipwatch-probe verify FILE`: re-check every signature in a JSONL file.

Accepts probe output (one signed record per line, the public key in
`probe.public_key`), collector exports (`{"measurement": {...}, "public_key":
..., ...}` per line) and OONI-format exports (the record is
`test_keys.voipwatch_record` with `test_keys.evidence` put back). Reads line
by line: constant memory on any file size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from probe.core.errors import SignatureError, UserError
from probe.core.signing import decode_public_key, verify_record


def _record_and_key(obj: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(obj, dict):
        raise SignatureError("not_a_record", "the line is not a JSON object")
    keys = obj.get("test_keys")
    if isinstance(keys, dict) and isinstance(keys.get("voipwatch_record"), dict):
        record = {**keys["voipwatch_record"], "evidence": keys.get("evidence")}
        key = _field(record.get("probe"), "public_key") or \
            _field(keys.get("voipwatch_collector"), "public_key")
    elif isinstance(obj.get("measurement"), dict):
        record, key = obj["measurement"], obj.get("public_key")
    else:
        record, key = obj, _field(obj.get("probe"), "public_key")
    if not isinstance(key, str):
        raise SignatureError("no_public_key", "no public key to verify with")
    return record, key


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else None


def check_line(line: str) -> None:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise SignatureError("not_json", str(exc)) from exc
    except RecursionError as exc:  # [[[[... : no record is nested that deep
        raise SignatureError("not_json", "nested too deeply") from exc
    record, key = _record_and_key(obj)
    verify_record(record, decode_public_key(key))


def verify_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """Yield (line number, None if valid else the reason) for each non-empty line."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"no such file: {path}") from exc
    except (IsADirectoryError, PermissionError) as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    check_line(line)
                except SignatureError as exc:
                    yield number, str(exc)
                else:
                    yield number, None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text (a JSONL file is expected)") from exc
