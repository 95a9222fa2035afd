"""Strict parsing of ingest bodies (collector.batch)."""

from __future__ import annotations

import pytest

from collector.batch import MalformedBody, TooManyItems, parse_batch


def test_elements_keep_their_exact_text() -> None:
    body = b' [ {"a": 1,  "b":"\\u00e9"} ,\n{"c":[1.0]} ] '
    first, second = parse_batch(body)
    assert first.text == '{"a": 1,  "b":"\\u00e9"}' and first.value == {"a": 1, "b": "é"}
    assert second.text == '{"c":[1.0]}'
    assert parse_batch(b"[]") == []


@pytest.mark.parametrize(("body", "message"), [
    (b"", "must be a JSON array"),
    (b'{"a":1}', "must be a JSON array"),
    (b"[1,]", "element 1: Expecting value"),
    (b"[1 2]", "expected ',' or ']' after element 0"),
    (b"[1]]", "trailing data"),
    (b'[{"a":1,"a":2}]', "duplicate key 'a'"),
    (b"[NaN]", "NaN is not JSON"),
    (b"[-Infinity]", "-Infinity is not JSON"),
    (b"[1e400]", "number out of range"),
    (b"[9007199254740992]", "beyond 2**53-1"),
    (b'["\xff"]', "not UTF-8 at byte 2"),
    (b'["a\x01b"]', "Invalid control character"),
])
def test_malformed(body: bytes, message: str) -> None:
    with pytest.raises(MalformedBody, match=message.replace("*", r"\*").replace("[", r"\[")):
        parse_batch(body)


def test_too_many_items_stops_early() -> None:
    with pytest.raises(TooManyItems):
        parse_batch(b"[" + b",".join([b"{}"] * 11) + b"]", max_items=10)
    assert len(parse_batch(b"[" + b",".join([b"{}"] * 10) + b"]", max_items=10)) == 10
