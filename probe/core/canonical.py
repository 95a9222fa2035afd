"""RFC 8785 (JSON Canonicalization Scheme) bytes: what a signature covers.

The one implementation for the probe and the collector. The `rfc8785` package
is the reference, correct but pure Python; when orjson is installed (it comes
with the collector extra) the same bytes come from orjson, about four times
faster (bench/canonical.py). That path is exact because what reaches orjson is
already what JCS writes:
- strings: orjson escapes exactly what RFC 8785 section 3.2.2.2 escapes;
- numbers: floats are rendered in ECMAScript form (`es_number`, RFC 8785
  section 3.2.2.3) as `orjson.Fragment`s; integers beyond 2**53 are refused;
- key order: orjson sorts by code point, which equals JCS's UTF-16 order
  (section 3.2.3) unless keys hold astral characters: those values take the
  reference path.
Property tests hold both paths equal to `rfc8785.dumps` (tests/probe/core/test_canonical.py).
"""

from __future__ import annotations

from typing import Any

import rfc8785

try:
    import orjson
except ImportError:  # a probe installed without it: the reference path only
    orjson = None  # type: ignore[assignment]  # (the module or None; checked before use)

MAX_SAFE_INTEGER = 2**53 - 1

# what `canonical_bytes` raises for a value JCS cannot write (NaN, 2**60, a set...)
CanonicalizationError = rfc8785.CanonicalizationError


class _NotFast(Exception):
    """The value needs the reference path (astral keys, types orjson would write otherwise)."""


def es_number(value: float) -> str:
    """A finite double as ECMAScript's Number.prototype.toString writes it
    (ECMA-262 7.1.12.1): shortest round-trip digits, exponent only outside
    [1e-6, 1e21)."""
    if value == 0:
        return "0"  # also -0.0
    text = repr(abs(value))  # shortest round-trip digits, as ECMAScript requires
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # n: position of the decimal point relative to the start of `digits`
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        out = digits + "0" * (point - k)
    elif 0 < point <= 21:
        out = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        out = "0." + "0" * -point + digits
    else:
        power = point - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + \
            ("e+" if power > 0 else "e-") + str(abs(power))
    return "-" + out if value < 0 else out


def float_fragment(text: str) -> Any:
    """`parse_float` hook of a JSON parser (collector/batch.py): the literal as
    its canonical form, an `orjson.Fragment` that `canonical_bytes(..., parsed=True)`
    writes as is."""
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:40]}")
    assert orjson is not None, "float_fragment needs orjson (the collector extra)"
    return orjson.Fragment(es_number(value).encode())


def _prepare(value: Any) -> Any:
    """`value` with every float as its canonical Fragment; _NotFast for what
    only the reference path writes exactly (or refuses)."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise _NotFast
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise _NotFast
        return orjson.Fragment(es_number(value).encode())
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                raise _NotFast  # astral: UTF-16 order differs from code point order
            out[key] = _prepare(item)
        return out
    if kind is list:
        return [_prepare(item) for item in value]
    raise _NotFast  # str/int subclasses, tuples, ...: written by the reference


def dumps(value: Any, *, parsed: bool = False) -> bytes:
    """RFC 8785 bytes of a JSON value. `parsed`: the value came from a parser
    using `float_fragment` and refusing integers beyond 2**53 with only ASCII
    keys (collector/batch.py), so it goes to orjson as it is."""
    if orjson is not None:
        try:
            return orjson.dumps(value if parsed else _prepare(value),
                                option=orjson.OPT_SORT_KEYS)
        except (_NotFast, orjson.JSONEncodeError):
            if parsed:
                raise CanonicalizationError("not canonicalisable") from None
    return rfc8785.dumps(value)


def canonical_bytes(record: dict[str, Any], *, parsed: bool = False) -> bytes:
    """The bytes a record's signature covers: its JCS form without `signature`.
    Raises CanonicalizationError (a ValueError) for a value JCS cannot write."""
    return dumps({k: v for k, v in record.items() if k != "signature"}, parsed=parsed)
