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
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from probe.core.record import rfc3339

# every text is large_string: a batch's signed records may be longer than a
# 32-bit offset addresses, and Arrow joins only texts of one type
_TEXT = pa.large_string()


def _lit(text: str) -> Any:
    return pa.scalar(text, _TEXT)


def _join(*parts: Any, separator: str = "") -> Any:
    """Element-wise concatenation; a null in any part makes the line null, so
    every part is filled first."""
    return pc.binary_join_element_wise(*parts, _lit(separator))


def _text(column: Any) -> Any:
    return column if column.type == _TEXT else pc.cast(column, _TEXT)


# ".000Z" to ".999Z": a time's milliseconds and zone, looked up
_MILLIS = pa.array([f".{n:03d}Z" for n in range(1000)], _TEXT)
_TIME = pa.timestamp("ms", tz="UTC")


def _times(column: Any) -> Any:
    """RFC 3339 texts of a time column (nulls kept), as
    `probe.core.record.rfc3339` writes them. Arrow formats a time in about
    1.5 µs, so only each distinct second of the batch is formatted (a batch
    holds a few hundred), and the milliseconds are looked up. Times before
    1970, whose division rounds the other way (and which Python writes with
    years unpadded below 1000), take rfc3339 itself."""
    if column.null_count == len(column):
        return pa.nulls(len(column), _TEXT)
    millis = pc.cast(pc.cast(column, _TIME), pa.int64())
    if pc.min(millis).as_py() < 0:
        return pa.array([None if value is None else rfc3339(value)
                         for value in column.to_pylist()], _TEXT)
    seconds = pc.divide(millis, 1000)  # integers: the quotient, rounded down
    distinct = pc.unique(seconds)
    texts = pc.strftime(pc.cast(distinct, pa.timestamp("s", tz="UTC")),
                        format="%Y-%m-%dT%H:%M:%S")
    return _join(pc.take(_text(texts), pc.index_in(seconds, distinct)),
                 pc.take(_MILLIS, pc.subtract(millis, pc.multiply(seconds, 1000))))


# JSON: what orjson escapes in a string, and how (the backslash first, so the
# later replacements' backslashes stay single)
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"')] + [
    (chr(code), _SHORT.get(chr(code), f"\\u{code:04x}")) for code in range(0x20)]
_NEEDS_JSON_ESCAPE = r'[\x00-\x1f"\\]'


def _json_string(column: Any) -> Any:
    """Each value as a JSON string, `null` for nulls."""
    text = _text(column)
    if pc.any(pc.match_substring_regex(text, _NEEDS_JSON_ESCAPE)).as_py():
        for old, new in _JSON_ESCAPES:
            text = pc.replace_substring(text, old, new)
    return pc.fill_null(_join(_lit('"'), text, _lit('"')), _lit("null"))


def _json_int(column: Any) -> Any:
    return pc.fill_null(_text(column), _lit("null"))


def _json_bool(column: Any) -> Any:
    return pc.fill_null(pc.if_else(column, _lit("true"), _lit("false")), _lit("null"))


def _probe_ip(column: Any) -> Any:
    """`,"probe_ip":"..."` where there is an address (the generic path leaves
    the key out for none or an empty one), else nothing."""
    present = pc.fill_null(pc.greater(pc.binary_length(column), 0), False)
    return pc.if_else(present, _join(_lit(',"probe_ip":'), _json_string(column)), _lit(""))


# a batch is formatted a few pieces' worth of rows at a time: 4 MiB, about
# 4,000 records of the usual size (a batch's 2,000 in one go), 64 of the largest
SLICE_PIECES = 4


def _pieces(lines: Any, size: int) -> Iterator[bytes]:
    """The text of a large_string array without nulls, its lines back to back
    (the slice of its data buffer between its first and last offsets), in
    pieces of `size` bytes: what is handed over is bounded as in the generic
    path (collector/export.py PIECE_BYTES), however large the batch."""
    _, offsets, data = lines.buffers()
    start, = struct.unpack_from("<q", offsets, 8 * lines.offset)
    end, = struct.unpack_from("<q", offsets, 8 * (lines.offset + len(lines)))
    for at in range(start, end, size):
        yield data.slice(at, min(size, end - at)).to_pybytes()


def _jsonl_lines(batch: Any) -> Any:
    """The lines of collector/export.py's `item`, key for key."""

    def col(name: str) -> Any:
        return batch.column(name)

    return _join(
        _lit('{"measurement":'), pc.fill_null(_text(col("measurement")), _lit("null")),
        _lit(',"public_key":'), _json_string(col("public_key")),
        _lit(',"received_at":'), _json_string(_times(col("received_at"))),
        _lit(',"probe_cc":'), _json_string(col("probe_cc")),
        _lit(',"probe_asn":'), _json_int(col("probe_asn")),
        _lit(',"probe_as_org":'), _json_string(col("probe_as_org")),
        _lit(',"geoip":{"source":'), _json_string(col("geoip_source")),
        _lit(',"date":'), _json_string(col("geoip_date")),
        _lit('},"key_revoked_at":'), _json_string(_times(col("key_revoked_at"))),
        _lit(',"attribution":'), _json_string(col("attribution")),
        _lit(',"upload":{"cc":'), _json_string(col("upload_cc")),
        _lit(',"asn":'), _json_int(col("upload_asn")),
        _lit(',"as_org":'), _json_string(col("upload_as_org")),
        _lit('},"attribution_mismatch":'), _json_bool(col("attribution_mismatch")),
        _lit(',"record_sha256":'), _json_string(col("record_sha256")),
        _lit(',"log_index":'), _json_int(col("log_index")),
        _lit(',"late_seconds":'), _json_int(col("late_seconds")),
        _probe_ip(col("probe_ip")), _lit("}\n"))


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
            yield from _pieces(_jsonl_lines(rows), piece)


# CSV: a cell is quoted when it holds the delimiter, the quote, or a line end
_NEEDS_CSV_QUOTE = r'[,"\r\n]'


def _csv_cell(column: Any) -> Any:
    """Each value as a CSV cell: text as it is, or quoted with its quotes
    doubled; integers in decimal, booleans True/False (Python's str), times
    in RFC 3339; empty for nulls."""
    if pa.types.is_timestamp(column.type):
        column = _times(column)
    elif pa.types.is_boolean(column.type):
        column = pc.if_else(column, _lit("True"), _lit("False"))
    text = _text(column)
    quote = pc.match_substring_regex(text, _NEEDS_CSV_QUOTE)
    if pc.any(quote).as_py():
        quoted = _join(_lit('"'), pc.replace_substring(text, '"', '""'), _lit('"'))
        text = quoted if pc.all(quote).as_py() else pc.if_else(quote, quoted, text)
    return pc.fill_null(text, _lit(""))


def csv_rows(batches: Iterable[Any], columns: tuple[str, ...], piece: int) -> Iterator[bytes]:
    """CSV (docs/export.md) from record batches of `columns`: the header, then
    each batch's rows, in pieces of `piece` bytes."""
    yield (",".join(columns) + "\n").encode()
    for batch in batches:
        for rows in _slices(batch, SLICE_PIECES * piece):
            cells = [_csv_cell(rows.column(name)) for name in columns]
            cells[-1] = _join(cells[-1], _lit("\n"))  # the line's end, on its shortest cell
            yield from _pieces(_join(*cells, separator=","), piece)
