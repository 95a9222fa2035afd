"""Exports: JSONL, CSV and Parquet, streamed chunk by chunk (constant memory).

Memory follows bytes, not rows: the store's chunks hold at most about
`MeasurementStore.CHUNK_BYTES` of record text (8 MiB: 2,000 records of the
usual size, about 130 of the largest, `max_record_bytes`), the text formats
hand their bytes over in pieces of about PIECE_BYTES, and a Parquet row
group is written once it holds ROW_GROUP_ROWS records or ROW_GROUP_BYTES.

Submitting addresses, when the operator keeps them (`--keep-ip`), appear only
in exports made with `voipwatch-collector export --include-ip`: never over HTTP.

Every row carries the signed record exactly as the probe sent it, plus what the
collector added: when it arrived, the country and network it came from, the
lookup's source and date, the probe's public key and whether that key has since
been revoked. docs/export.md describes the formats and how to re-verify.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from collector import export_postgres, export_sqlite, ooni
from collector.store import Filters, MeasurementStore
from probe.core.record import rfc3339

FORMATS = ("jsonl", "csv", "parquet", "ooni")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8",
               "parquet": "application/vnd.apache.parquet",
               "ooni": "application/x-ndjson"}  # OONI's data format (collector/ooni.py)

# flat columns for CSV and Parquet; `measurement` holds the signed JSON text
COLUMNS = ("id", "started_at", "received_at", "service", "check", "role", "transport",
           "host", "port", "verdict", "blocking", "link_type", "upstream", "upstream_source",
           "upstream_confidence", "probe_cc", "probe_asn",
           "probe_as_org", "geoip_source", "geoip_date", "key_id", "key_revoked_at",
           "public_key", "probe_ip", "measurement",
           # evidence (docs/evidence.md), after the original columns
           "record_sha256", "log_index", "late_seconds", "attribution", "upload_cc",
           "upload_asn", "upload_as_org", "attribution_mismatch")


def _time(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def item(row: sa.Row[Any], include_ip: bool = False) -> dict[str, Any]:
    """One export row as a JSON object (JSONL line, API item). The record is
    embedded as raw JSON, byte for byte what was signed and sent."""
    out: dict[str, Any] = {
        "measurement": orjson.Fragment(row.record.encode()),
        "public_key": row.public_key,
        "received_at": _time(row.received_at),
        "probe_cc": row.cc,
        "probe_asn": row.asn,
        "probe_as_org": row.as_org,
        "geoip": {"source": row.geoip_source, "date": row.geoip_date},
        "key_revoked_at": _time(row.key_revoked_at),
        "attribution": row.attribution,
        "upload": {"cc": row.upload_cc, "asn": row.upload_asn, "as_org": row.upload_as_org},
        "attribution_mismatch": row.attribution_mismatch,
        "record_sha256": row.record_sha256,
        "log_index": row.log_index,
        "late_seconds": row.late_seconds,
    }
    if include_ip and row.probe_ip:
        out["probe_ip"] = row.probe_ip
    return out


def flat(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "started_at": _time(row.started_at), "received_at": _time(row.received_at),
        "service": row.service, "check": row.check_name, "role": row.role,
        "transport": row.transport, "host": row.endpoint_host, "port": row.endpoint_port,
        "verdict": row.verdict, "blocking": row.blocking, "link_type": row.link_type,
        "upstream": row.upstream, "upstream_source": row.upstream_source,
        "upstream_confidence": row.upstream_confidence,
        "probe_cc": row.cc, "probe_asn": row.asn, "probe_as_org": row.as_org,
        "geoip_source": row.geoip_source, "geoip_date": row.geoip_date, "key_id": row.key_id,
        "key_revoked_at": _time(row.key_revoked_at), "public_key": row.public_key,
        "probe_ip": row.probe_ip, "measurement": row.record,
        "record_sha256": row.record_sha256, "log_index": row.log_index,
        "late_seconds": row.late_seconds, "attribution": row.attribution,
        "upload_cc": row.upload_cc, "upload_asn": row.upload_asn,
        "upload_as_org": row.upload_as_org, "attribution_mismatch": row.attribution_mismatch,
    }


# the text formats hand their bytes over in pieces of about this size, not a
# chunk at a time: a chunk's text would be held in two or three more copies
# (lines, their join, the socket's buffer) beside its rows
PIECE_BYTES = 1024 * 1024


def pieces(lines: Iterable[bytes], size: int | None = None) -> Iterator[bytes]:
    """`lines` joined into pieces of about `size` bytes (PIECE_BYTES)."""
    size = PIECE_BYTES if size is None else size
    held: list[bytes] = []
    length = 0
    for line in lines:
        held.append(line)
        length += len(line)
        if length >= size:
            yield b"".join(held)
            held, length = [], 0
    if held:
        yield b"".join(held)


def jsonl(chunks: Iterable[list[sa.Row[Any]]], include_ip: bool = False) -> Iterator[bytes]:
    newline = orjson.OPT_APPEND_NEWLINE
    return pieces(orjson.dumps(item(r, include_ip), option=newline)
                  for rows in chunks for r in rows)


def csv_rows(chunks: Iterable[list[sa.Row[Any]]], include_ip: bool = False) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rows in chunks:
        for row in rows:
            values = flat(row)
            if not include_ip:
                values["probe_ip"] = None
            writer.writerow(values)
            if buffer.tell() >= PIECE_BYTES:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def _parquet_schema() -> Any:
    import pyarrow as pa

    text = pa.string()
    types = {"port": pa.int32(), "probe_asn": pa.int64(),
             "started_at": pa.timestamp("ms", tz="UTC"),
             "received_at": pa.timestamp("ms", tz="UTC"),
             "key_revoked_at": pa.timestamp("ms", tz="UTC"), "measurement": pa.large_string(),
             "log_index": pa.int64(), "late_seconds": pa.int64(), "upload_asn": pa.int64(),
             "attribution_mismatch": pa.bool_()}
    return pa.schema([(name, types.get(name, text)) for name in COLUMNS])


class _Sink(io.RawIOBase):
    """A write-only file that hands its bytes over as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _python_batches(chunks: Iterable[list[sa.Row[Any]]], include_ip: bool,
                    schema: Any) -> Iterator[Any]:
    import pyarrow as pa

    for rows in chunks:
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for row in rows:
            values = flat(row)
            values.update(started_at=row.started_at, received_at=row.received_at,
                          key_revoked_at=row.key_revoked_at)
            if not include_ip:
                values["probe_ip"] = None
            for name in COLUMNS:
                columns[name].append(values[name])
        yield pa.RecordBatch.from_pydict(columns, schema=schema)


ROW_GROUP_ROWS = 32_768
# ... or fewer, once the pending batches hold this many bytes: 32,768 records
# of the usual size (about 1 kB) are about 40 MB of Arrow data, of the
# largest (max_record_bytes, 64 KiB) 2 GB
ROW_GROUP_BYTES = 48 * 1024 * 1024
# statistics of the signed text would be useless and are the bulk of the footer,
# which a Parquet file holds in memory until it is closed
STATISTICS = tuple(name for name in COLUMNS if name != "measurement")
# a dictionary of values unique to each record only costs time: the writer
# builds it, finds it too large and falls back to plain encoding, page by page
ONE_PER_RECORD = ("id", "started_at", "received_at", "measurement", "record_sha256",
                  "log_index")
DICTIONARY = tuple(name for name in COLUMNS if name not in ONE_PER_RECORD)


def parquet_writer(where: Any, schema: Any) -> Any:
    """A Parquet writer to `where` (a path or a file) with the export's options:
    zstd, statistics and dictionaries where they serve."""
    import pyarrow.parquet as pq

    return pq.ParquetWriter(where, schema, compression="zstd",
                            write_statistics=list(STATISTICS),
                            use_dictionary=list(DICTIONARY))


def _parquet_file(batches: Iterable[Any], schema: Any) -> Iterator[bytes]:
    """Row groups of at least ROW_GROUP_ROWS records or ROW_GROUP_BYTES (whole
    batches), bytes yielded as each group is written: the footer (a few hundred
    bytes per group and column) grows with the groups, so they are large;
    memory stays constant at any size, and at any record size."""
    import pyarrow as pa

    sink = _Sink()
    writer = parquet_writer(pa.PythonFile(sink, mode="w"), schema)
    pending: list[Any] = []
    rows = size = 0
    try:
        for batch in batches:
            pending.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
            if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:  # one group of the pending
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=rows)
                pending, rows, size = [], 0, 0
                yield sink.drain()
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=rows)
    finally:
        writer.close()
    yield sink.drain()


def parquet(chunks: Iterable[list[sa.Row[Any]]], include_ip: bool = False) -> Iterator[bytes]:
    schema = _parquet_schema()
    return _parquet_file(_python_batches(chunks, include_ip, schema), schema)


WRITERS = {"jsonl": jsonl, "csv": csv_rows, "parquet": parquet, "ooni": ooni.lines}


def export(store: MeasurementStore, filters: Filters, fmt: str,
           include_ip: bool = False) -> Iterator[bytes]:
    """The bytes of an export of every record matching `filters`, oldest first.
    Parquet, JSONL and CSV are read natively from a SQLite file
    (collector/export_sqlite.py) and from PostgreSQL
    (collector/export_postgres.py), the text formats written column by column
    (collector/export_text.py)."""
    if fmt in ("parquet", "jsonl", "csv") and (export_sqlite.usable(store.engine)
                                               or export_postgres.usable(store.engine)):
        schema = _parquet_schema()
        if fmt == "parquet":
            # a row group's worth read ahead: the reader goes on while the
            # writer compresses a whole group (two batches ahead, it stopped)
            return _parquet_file(export_sqlite.batches(
                store.engine, filters.clauses(), include_ip, schema,
                ahead_bytes=ROW_GROUP_BYTES), schema)
        from collector import export_text

        # the text formats build a batch's lines beside it: batches of the
        # generic path's chunk (8 MiB of records, not the 16-32 of Parquet's)
        batches = export_sqlite.batches(store.engine, filters.clauses(), include_ip, schema,
                                        store.CHUNK_BYTES)
        return (export_text.jsonl(batches, PIECE_BYTES) if fmt == "jsonl"
                else export_text.csv_rows(batches, COLUMNS, PIECE_BYTES))
    return WRITERS[fmt](store.stream(filters), include_ip)
