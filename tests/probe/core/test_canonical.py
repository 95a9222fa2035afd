"""probe.core.canonical gives exactly the bytes of the reference RFC 8785
implementation (the `rfc8785` package) for any JSON value: on the orjson path,
plain or parsed by collector.batch, and on the reference path without orjson."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.batch import parse_batch
from probe.core import canonical
from probe.core.canonical import CanonicalizationError, canonical_bytes, es_number

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)
records = st.dictionaries(st.text(), json_values, max_size=8)


def reference(record: dict[str, Any]) -> bytes:
    return rfc8785.dumps({k: v for k, v in record.items() if k != "signature"})


@settings(max_examples=400, deadline=None)
@given(records)
def test_plain_values_equal_reference(record: dict[str, Any]) -> None:
    assert canonical_bytes(record) == reference(record)


@settings(max_examples=400, deadline=None)
@given(records)
def test_batch_parsed_values_equal_reference(record: dict[str, Any]) -> None:
    text = json.dumps(record, ensure_ascii=False)
    (element,) = parse_batch(f"[{text}]".encode())
    if element.fast:
        assert canonical_bytes(element.value, parsed=True) == reference(record)
    else:  # non-ASCII keys: the ingest canonicalises the plain parse instead
        assert not "".join(_keys(record)).isascii()
        assert canonical_bytes(json.loads(element.text)) == reference(record)


@settings(max_examples=100, deadline=None)
@given(records)
def test_without_orjson_the_reference_path(record: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(canonical, "orjson", None)
        assert canonical_bytes(record) == reference(record)


def test_astral_keys_sort_by_utf16() -> None:
    record = {"\U0001f600": 1, "\ufb01": 2}  # UTF-16: surrogates (D83D) before FB01
    assert canonical_bytes(record) == reference(record)
    assert canonical_bytes(record).index(b"\xef\xac\x81") > canonical_bytes(record).index(b"\xf0")


@pytest.mark.parametrize("value", [float("nan"), 2**60, {1, 2}])
def test_what_jcs_cannot_write_is_refused(value: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"x": value})


def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return list(value) + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_every_double_formats_as_ecmascript(bits: int) -> None:
    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if math.isfinite(value):
        assert es_number(value) == rfc8785.dumps(value).decode()


def test_number_forms() -> None:
    assert es_number(-0.0) == "0"
    cases = {0.0: "0", 100.0: "100", 1e21: "1e+21", 1e20: "100000000000000000000",
             1e-7: "1e-7", 1e-6: "0.000001", 12.5: "12.5", -3.25e-10: "-3.25e-10",
             5e-324: "5e-324", 1.7976931348623157e308: "1.7976931348623157e+308"}
    for value, text in cases.items():
        assert es_number(value) == text


def test_literal_forms_do_not_matter() -> None:
    (a,) = parse_batch(b'[{"b":1.50,"a":[1E2,-0.0,0.1e1]}]')
    assert canonical_bytes(a.value, parsed=True) == b'{"a":[100,0,1],"b":1.5}'
