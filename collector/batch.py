"""Strict parsing of an ingest body: a JSON array of signed records.

Each element keeps its exact source text (stored verbatim, so it can be
re-verified forever) and a parsed value ready for `probe.core.canonical`. The parse is
stricter than RFC 8259 requires, because a signature must mean one thing only:
duplicate object keys, NaN/Infinity and integers beyond 2**53 refuse the whole
body; so do invalid UTF-8, a top level that is not an array, and trailing data.
Compact ASCII records (what the probe sends) take a quicker parse that proves
it read the same thing (`_element`); anything else the strict one alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from probe.core.canonical import MAX_SAFE_INTEGER, float_fragment
from probe.core.errors import MalformedMessage

_WHITESPACE = " \t\n\r"


class MalformedBody(MalformedMessage):
    """The body is not a strict JSON array; the message says where."""


@dataclass
class Element:
    text: str  # the element's exact JSON text
    value: Any
    fast: bool  # canonical_bytes(value, parsed=True) applies (no non-ASCII keys)


class _Decoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__(object_pairs_hook=self._object, parse_float=float_fragment,
                         parse_int=self._int, parse_constant=self._constant, strict=True)
        self.ascii_keys = True

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise ValueError(f"duplicate key {key[:40]!r}")
                seen.add(key)
        if self.ascii_keys and not "".join(obj).isascii():
            self.ascii_keys = False
        return obj

    @staticmethod
    def _int(text: str) -> int:
        value = int(text)
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {text[:40]} is beyond 2**53-1 (RFC 8785 section 3.2.2.3)")
        return value

    @staticmethod
    def _constant(text: str) -> Any:
        raise ValueError(f"{text} is not JSON")


class _Quick(json.JSONDecoder):
    """The same parse into plain dicts (the C scanner's own): a repeated key
    keeps its last value here, so its result counts only once it writes back
    to the exact text (`_element`)."""

    # elements of one body it may fail to read before the rest go to the strict
    # decoder alone: a body written otherwise (with spaces, say) is not parsed twice
    MISSES = 4

    def __init__(self) -> None:
        super().__init__(parse_float=float_fragment, parse_int=_Decoder._int,
                         parse_constant=_Decoder._constant, strict=True)
        self.misses = 0


def _element(decoder: _Decoder, quick: _Quick | None, text: str, index: int
             ) -> tuple[Element, int]:
    """The element at `index` and where it ends. Most records are compact ASCII
    JSON as the probe writes it (`quick`: given for an ASCII body): parsed into plain
    dicts, such an element is the one value whose orjson form is its text, byte
    for byte, and that equality also rules out a repeated key (each key is
    written once). Anything else (spaces, escapes, other number forms, an
    error) takes the strict parse, whose result or message is the reference."""
    if quick is not None and quick.misses < quick.MISSES:
        try:
            value, end = quick.raw_decode(text, index)
            piece = text[index:end]
            if orjson.dumps(value) == piece.encode("ascii"):
                return Element(piece, value, True), end
        except (ValueError, RecursionError, orjson.JSONEncodeError):
            pass
        quick.misses += 1
    decoder.ascii_keys = True
    value, end = decoder.raw_decode(text, index)
    return Element(text[index:end], value, decoder.ascii_keys), end


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def parse_batch(body: bytes, max_items: int | None = None) -> list[Element]:
    """The elements of a JSON array body. Raises MalformedBody, or TooManyItems
    as soon as the array holds more than `max_items` elements."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"not UTF-8 at byte {exc.start}") from None
    decoder, quick = _Decoder(), _Quick() if text.isascii() else None
    index = _skip(text, 0)
    if index >= len(text) or text[index] != "[":
        raise MalformedBody("the body must be a JSON array of signed records")
    index = _skip(text, index + 1)
    elements: list[Element] = []
    if index < len(text) and text[index] == "]":
        index += 1
    else:
        while True:
            if max_items is not None and len(elements) >= max_items:
                raise TooManyItems(max_items)
            try:
                element, end = _element(decoder, quick, text, index)
            except json.JSONDecodeError as exc:
                raise MalformedBody(f"element {len(elements)}: {exc.msg} at char {exc.pos}"
                                    ) from None
            except (ValueError, RecursionError) as exc:
                raise MalformedBody(f"element {len(elements)}: {exc}") from None
            elements.append(element)
            index = _skip(text, end)
            if index < len(text) and text[index] == ",":
                index = _skip(text, index + 1)
                continue
            if index < len(text) and text[index] == "]":
                index += 1
                break
            raise MalformedBody(f"expected ',' or ']' after element {len(elements) - 1} "
                                f"at char {index}")
    if _skip(text, index) != len(text):
        raise MalformedBody(f"trailing data after the array at char {index}")
    return elements


class TooManyItems(MalformedMessage):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} records in one batch")
        self.limit = limit
