"""Strict parsing of ingest bodies (collector.batch)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import batch
from collector.batch import MalformedBody, TooManyItems, parse_batch
from probe.core.canonical import canonical_bytes


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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25)
records = st.dictionaries(st.text(min_size=1), json_values, min_size=1, max_size=6)
WRITERS = (
    lambda r: orjson.dumps(r).decode(),  # what the quick path recognises
    lambda r: json.dumps(r, separators=(",", ":"), ensure_ascii=False),  # the probe's spool
    lambda r: json.dumps(r, separators=(",", ":")),  # \u escapes
    lambda r: json.dumps(r),  # spaces
)


def strict(body: bytes) -> list[tuple[str, bytes, bool]]:
    """The elements as the strict decoder alone reads them (the reference)."""
    text, decoder, out, index = body.decode(), batch._Decoder(), [], 1
    while text[index] != "]":
        decoder.ascii_keys = True
        value, end = decoder.raw_decode(text, index)
        out.append((text[index:end], orjson.dumps(value), decoder.ascii_keys))
        index = end + 1 if text[end] == "," else end
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(records, min_size=1, max_size=3), st.sampled_from(range(len(WRITERS))))
def test_the_quick_parse_reads_what_the_strict_one_reads(
        values: list[dict[str, Any]], writer: int) -> None:
    body = ("[" + ",".join(WRITERS[writer](v) for v in values) + "]").encode()
    got = [(e.text, orjson.dumps(e.value), e.fast) for e in parse_batch(body)]
    assert got == strict(body)


@settings(max_examples=200, deadline=None)
@given(records, st.sampled_from(range(len(WRITERS))), st.data())
def test_a_repeated_key_refuses_the_body_however_it_is_written(
        value: dict[str, Any], writer: int, data: st.DataObject) -> None:
    """A repeated key with the same value, at any depth: a plain dict keeps one,
    and its orjson form must not pass for the text."""
    text = WRITERS[writer]({"outer": value})
    key = data.draw(st.sampled_from(sorted(value)))
    member = WRITERS[writer]({key: value[key]})[1:-1]
    doubled = text[:-2] + "," + member + "}}"  # the key once more, in the inner object
    with pytest.raises(MalformedBody, match="duplicate key"):
        parse_batch(f"[{doubled}]".encode())


def test_compact_ascii_records_take_the_quick_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the probe sends is read without the strict decoder's per-object
    hook (a third of the parse), and still exactly; anything else with it."""
    text = '{"a":1,"b":[1.5,"x",null,true],"c":{"d":-2}}'
    objects: list[int] = []
    strict_object = batch._Decoder._object

    def counted(self: batch._Decoder, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(1)
        return strict_object(self, pairs)

    monkeypatch.setattr(batch._Decoder, "_object", counted)
    (element,) = parse_batch(f"[{text}]".encode())
    assert element.text == text and element.fast and not objects
    assert element.value["c"] == {"d": -2}
    assert canonical_bytes(element.value, parsed=True) == rfc8785.dumps(json.loads(text))
    (spaced,) = parse_batch(b'[{"a": 1.0}]')  # 1.0 is written 1 by orjson: the strict parse
    assert spaced.text == '{"a": 1.0}' and objects


def test_a_body_written_otherwise_is_not_parsed_twice_throughout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a few elements the quick parse could not vouch for, the rest of
    the body goes to the strict decoder alone."""
    attempts: list[int] = []
    quick_decode = batch._Quick.raw_decode

    def counted(self: batch._Quick, text: str, index: int = 0) -> tuple[Any, int]:
        attempts.append(index)
        return quick_decode(self, text, index)

    monkeypatch.setattr(batch._Quick, "raw_decode", counted)
    spaced = parse_batch(b"[" + b", ".join([b'{"a": 1}'] * 50) + b"]")
    assert [e.text for e in spaced] == ['{"a": 1}'] * 50
    assert len(attempts) == batch._Quick.MISSES
