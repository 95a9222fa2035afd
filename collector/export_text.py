"""JSONL and CSV exports written column by column from the native readers'
Arrow batches (collector/export_sqlite.py, collector/export_postgres.py).

The generic path (collector/export.py: `jsonl`, `csv_rows`) builds a row
object, a dict and each value's text per record: 26k records/s to JSONL and
10k/s to CSV (bench/export.py). Here each column of a batch becomes its
JSON or CSV text with Arrow's compute functions, in C, and the columns are
joined into lines; no Python object is made per record. The bytes are those
of the generic path (tests/collector/test_export_text.py), with one
exception: a CSV cell holding a carriage return is quoted, as RFC 4180
requires (Python's csv module quotes only the line terminator it writes).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from probe.core.record import rfc3339

# every text is large_string: a batch's signed records may be longer than a
# 32-bit offset addresses, and Arrow joins only texts of one type
TEXT = pa.large_string()


def lit(value: str) -> Any:
    return pa.scalar(value, TEXT)


def join(*parts: Any, separator: str = "") -> Any:
    """Element-wise concatenation; a null in any part makes the line null, so
    every part is filled first."""
    return pc.binary_join_element_wise(*parts, lit(separator))


def as_text(column: Any) -> Any:
    """`column` as large_string (integers in decimal)."""
    return column if column.type == TEXT else pc.cast(column, TEXT)


_UTC = "UTC"


def times(column: Any, digits: int = 3, fallback: Callable[[Any], str] = rfc3339) -> Any:
    """RFC 3339 texts of a time column (nulls kept) with `digits` of the
    second (3: `probe.core.record.rfc3339`; 6: a leaf's `leaf_time`), `Z`.
    Arrow formats a time in about 1.5 µs, so only each distinct second of
    the column is formatted (a batch holds a few hundred) and the fraction
    written as a number. Times before 1970, whose division rounds the other
    way (and which Python writes with years unpadded below 1000), take
    `fallback` (rfc3339, leaf_time) one by one."""
    if column.null_count == len(column):
        return pa.nulls(len(column), TEXT)
    per_second = 10 ** digits
    ticks = pc.cast(pc.cast(column, pa.timestamp({3: "ms", 6: "us"}[digits], tz=_UTC)),
                    pa.int64())
    if pc.min(ticks).as_py() < 0:
        return pa.array([None if value is None else fallback(value)
                         for value in column.to_pylist()], TEXT)
    seconds = pc.divide(ticks, per_second)  # integers: the quotient, rounded down
    distinct = pc.unique(seconds)
    texts = pc.strftime(pc.cast(distinct, pa.timestamp("s", tz=_UTC)),
                        format="%Y-%m-%dT%H:%M:%S")
    fraction = pc.utf8_lpad(as_text(pc.subtract(ticks, pc.multiply(seconds, per_second))),
                            width=digits, padding="0")
    return join(pc.take(as_text(texts), pc.index_in(seconds, distinct)), lit("."), fraction,
                lit("Z"))


def text_bytes(texts: Any) -> memoryview:
    """The values of a large_string array back to back, without a copy: the
    slice of its data between its first and last offsets (bytes under nulls
    included)."""
    _, offsets, data = texts.buffers()
    start, = struct.unpack_from("<q", offsets, 8 * texts.offset)
    end, = struct.unpack_from("<q", offsets, 8 * (texts.offset + len(texts)))
    return memoryview(data if data is not None else b"")[start:end]


def _all_but(special: bytes) -> bytes:
    """Every byte but `special`'s: what `_holds` deletes."""
    return bytes(byte for byte in range(256) if byte not in special)


def _holds(texts: Any, others: bytes) -> bool:
    """Whether any value of a large_string array may hold one of the bytes
    `others` leaves out: its whole text with `others` deleted, which is
    empty when none does (3.6 ms for 6.6 MB, where a regex search took 47
    and Arrow's per-value match 0.13 µs a value; bytes under a null count
    too: a needless escape, never a wrong one)."""
    return (texts.null_count < len(texts)
            and bool(bytes(text_bytes(texts)).translate(None, others)))


# JSON: what orjson (and RFC 8785) escape in a string, and how (the backslash
# first, so the later replacements' backslashes stay single)
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"')] + [
    (chr(code), _SHORT.get(chr(code), f"\\u{code:04x}")) for code in range(0x20)]
_NOT_ESCAPED = _all_but(bytes(range(0x20)) + b'"\\')


def _escaped(column: Any) -> Any:
    """Each value's text as it goes between a JSON string's quotes."""
    text = as_text(column)
    if _holds(text, _NOT_ESCAPED):
        for old, new in _JSON_ESCAPES:
            text = pc.replace_substring(text, old, new)
    return text


def _json_string(column: Any) -> Any:
    """Each value as a JSON string, `null` for nulls."""
    return pc.fill_null(join(lit('"'), _escaped(column), lit('"')), lit("null"))


class Line:
    """A line's parts, joined once: literal text between columns' texts. A
    JSON string column without nulls has its quotes in the literals around it
    (a join costs about 25 ns a value for each part)."""

    def __init__(self, literal: str) -> None:
        self.parts: list[Any] = []
        self.pending = literal

    def literal(self, text: str) -> None:
        self.pending += text

    def value(self, texts: Any) -> None:
        """Texts to write as they are (no nulls)."""
        self.parts += [lit(self.pending), texts]
        self.pending = ""

    def string(self, column: Any) -> None:
        if column.null_count:
            self.value(_json_string(column))
        else:
            self.pending += '"'
            self.value(_escaped(column))
            self.pending = '"'

    def joined(self) -> Any:
        return join(*self.parts, lit(self.pending))


def json_int(column: Any) -> Any:
    return pc.fill_null(as_text(column), lit("null"))


def _json_bool(column: Any) -> Any:
    return pc.fill_null(pc.if_else(column, lit("true"), lit("false")), lit("null"))


def _probe_ip(column: Any) -> Any:
    """`,"probe_ip":"..."` where there is an address (the generic path leaves
    the key out for none or an empty one), else nothing."""
    present = pc.fill_null(pc.greater(pc.binary_length(column), 0), False)
    return pc.if_else(present, join(lit(',"probe_ip":'), _json_string(column)), lit(""))


# a batch is formatted a few pieces' worth of rows at a time: 4 MiB, about
# 4,000 records of the usual size (a batch's 2,000 in one go), 64 of the largest
SLICE_PIECES = 4


def pieces(lines: Any, size: int) -> Iterator[bytes]:
    """The text of a large_string array without nulls, its lines back to back,
    in pieces of `size` bytes: what is handed over is bounded as in the
    generic path (collector/export.py PIECE_BYTES), however large the batch."""
    data = text_bytes(lines)
    for at in range(0, len(data), size):
        yield data[at:at + size].tobytes()


def _jsonl_lines(batch: Any) -> Any:
    """The lines of collector/export.py's `item`, key for key."""

    def col(name: str) -> Any:
        return batch.column(name)

    line = Line('{"measurement":')
    line.value(pc.fill_null(as_text(col("measurement")), lit("null")))
    for key, text in ((',"public_key":', col("public_key")),
                      (',"received_at":', times(col("received_at"))),
                      (',"probe_cc":', col("probe_cc"))):
        line.literal(key)
        line.string(text)
    line.literal(',"probe_asn":')
    line.value(json_int(col("probe_asn")))
    for key, text in ((',"probe_as_org":', col("probe_as_org")),
                      (',"geoip":{"source":', col("geoip_source")),
                      (',"date":', col("geoip_date")),
                      ('},"key_revoked_at":', times(col("key_revoked_at"))),
                      (',"attribution":', col("attribution")),
                      (',"upload":{"cc":', col("upload_cc"))):
        line.literal(key)
        line.string(text)
    line.literal(',"asn":')
    line.value(json_int(col("upload_asn")))
    line.literal(',"as_org":')
    line.string(col("upload_as_org"))
    line.literal('},"attribution_mismatch":')
    line.value(_json_bool(col("attribution_mismatch")))
    line.literal(',"record_sha256":')
    line.string(col("record_sha256"))
    for key, name in ((',"log_index":', "log_index"), (',"late_seconds":', "late_seconds")):
        line.literal(key)
        line.value(json_int(col(name)))
    line.value(_probe_ip(col("probe_ip")))
    line.literal("}\n")
    return line.joined()


def _slices(batch: Any, size: int) -> Iterator[Any]:
    """`batch` in row ranges of about `size` bytes (zero-copy): the texts
    formatting builds, three or four copies of a range, stay bounded by it
    whatever the records' size."""
    rows = max(1, batch.num_rows * size // max(1, batch.nbytes))
    for at in range(0, batch.num_rows, rows):
        yield batch.slice(at, rows)


def jsonl(batches: Iterable[Any], piece: int) -> Iterator[bytes]:
    """JSONL (docs/export.md) from record batches of export.COLUMNS, in pieces
    of `piece` bytes."""
    for batch in batches:
        for rows in _slices(batch, SLICE_PIECES * piece):
            yield from pieces(_jsonl_lines(rows), piece)


# CSV: a cell is quoted when it holds the delimiter, the quote, or a line end
_NEEDS_CSV_QUOTE = r'[,"\r\n]'
_NOT_QUOTED = _all_but(b',"\r\n')


def _csv_cell(column: Any) -> Any:
    """Each value as a CSV cell: text as it is, or quoted with its quotes
    doubled; integers in decimal, booleans True/False (Python's str), times
    in RFC 3339; empty for nulls."""
    if pa.types.is_timestamp(column.type):
        column = times(column)
    elif pa.types.is_boolean(column.type):
        column = pc.if_else(column, lit("True"), lit("False"))
    text = as_text(column)
    if not _holds(text, _NOT_QUOTED):
        return pc.fill_null(text, lit(""))
    quote = pc.match_substring_regex(text, _NEEDS_CSV_QUOTE)
    if pc.any(quote).as_py():
        quoted = join(lit('"'), pc.replace_substring(text, '"', '""'), lit('"'))
        text = quoted if pc.all(quote).as_py() else pc.if_else(quote, quoted, text)
    return pc.fill_null(text, lit(""))


def csv_rows(batches: Iterable[Any], columns: tuple[str, ...], piece: int) -> Iterator[bytes]:
    """CSV (docs/export.md) from record batches of `columns`: the header, then
    each batch's rows, in pieces of `piece` bytes."""
    yield (",".join(columns) + "\n").encode()
    for batch in batches:
        for rows in _slices(batch, SLICE_PIECES * piece):
            cells = [_csv_cell(rows.column(name)) for name in columns]
            cells[-1] = join(cells[-1], lit("\n"))  # the line's end, on its shortest cell
            yield from pieces(join(*cells, separator=","), piece)
