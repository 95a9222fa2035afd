"""JSONL and CSV written column by column from the native readers
(collector/export_text.py) are, byte for byte, what the generic path writes
row by row, on both backends, for stored values a JSON or CSV writer must
escape or quote (quotes, backslashes, commas, every control character,
U+2028, astral characters), nulls in every nullable column over several
batches, times on a whole second and before the year 1000, and with and
without the submitting addresses. One deliberate difference: a CSV cell
holding a carriage return is quoted (RFC 4180), which Python's csv module
does not do."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from collector import export as export_module
from collector import export_postgres, export_sqlite
from collector.db.schema import measurements
from collector.export import COLUMNS, csv_rows, export, flat, jsonl
from collector.store import Filters, MeasurementStore
from probe.core.record import rfc3339
from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, database_url, make_record, revoked_store

EVERY_CONTROL = "".join(chr(code) for code in range(0x20))
AWKWARD = ['say "hi", then \\ go', EVERY_CONTROL, "line\u2028sep \U0001F600 é",
           "=cmd|' /C calc'!A0", "", "a,b", 'only"quote', "tab\there"]


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeasurementStore]:
    """Records of two keys (one revoked), then stored values rewritten in
    place to what a writer must escape: the export writes the stored values,
    whatever they are."""
    data = tmp_path_factory.mktemp("export-text")
    first, second = ProbeKey.generate(), ProbeKey.generate()
    start = datetime(2016, 1, 7, tzinfo=UTC)
    records = [make_record(first, "whatsapp", started_at=rfc3339(start + timedelta(hours=i)))
               for i in range(9)]
    records += [make_record(second, "skype", verdict="blocked", blocking="tcp.reset",
                            started_at=rfc3339(start + timedelta(days=40, hours=i)))
                for i in range(4)]
    engine = revoked_store(data, database_url(request.param, request), first, second,
                           records, ["--max-record-age-days", "0", "--keep-ip"])
    m = measurements.c

    def fitted(name: str, text: str) -> str:
        """`text` as PostgreSQL can hold it: no NUL, cut to the column's length."""
        if engine.dialect.name != "postgresql":
            return text
        length = getattr(measurements.c[name].type, "length", None)
        return text.replace("\x00", "")[:length]

    with engine.begin() as conn:
        seqs = [row.seq for row in conn.execute(sa.select(m.seq).order_by(m.seq))]
        texts = ("as_org", "upload_as_org", "geoip_source", "upstream", "probe_ip",
                 "attribution", "upload_cc")
        for n, seq in enumerate(seqs[:9]):  # whatsapp: no carriage return anywhere
            awkward = AWKWARD[n % len(AWKWARD)].replace("\r", "")
            values: dict[str, Any] = {name: fitted(name, awkward) if (n + i) % 3 else None
                                      for i, name in enumerate(texts)}
            values.update(endpoint_host=fitted("endpoint_host", awkward),
                          asn=None if n % 2 else 4294967295, upload_asn=None if n % 3 else 7,
                          late_seconds=None if n % 4 else 86401 * n,
                          attribution_mismatch=(None, True, False)[n % 3])
            if n == 4:
                values["received_at"] = datetime(2016, 3, 1, 12, 0, 5, tzinfo=UTC)
            conn.execute(measurements.update().where(m.seq == seq).values(**values))
        conn.execute(measurements.update().where(m.seq == seqs[9]).values(
            as_org="carriage\rreturn", endpoint_host="\r", probe_ip=fitted("probe_ip", "\r\n"),
            started_at=datetime(999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)))
    yield MeasurementStore(engine)
    engine.dispose()


@pytest.fixture(autouse=True, params=[None, 700], ids=["pieces", "small-pieces"])
def small_batches(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 3 rows (nulls over several batches); with small pieces a
    batch is also formatted in slices of a row or two and handed over in
    pieces that cut its lines."""
    for reader in (export_sqlite, export_postgres):
        monkeypatch.setattr(reader, "BATCH_ROWS", 3)
    if request.param:
        monkeypatch.setattr(export_module, "PIECE_BYTES", request.param)


def native(store: MeasurementStore, filters: Filters, fmt: str, include_ip: bool) -> bytes:
    assert export_sqlite.usable(store.engine) or export_postgres.usable(store.engine)
    return b"".join(export(store, filters, fmt, include_ip))


@pytest.mark.parametrize("include_ip", [False, True])
@pytest.mark.parametrize("filters", [Filters(), Filters(service="skype"),
                                     Filters(service="no-such-service")],
                         ids=["all", "skype", "nothing"])
def test_jsonl_is_the_generic_paths_bytes(store: MeasurementStore, filters: Filters,
                                          include_ip: bool) -> None:
    written = native(store, filters, "jsonl", include_ip)
    assert written == b"".join(jsonl(store.stream(filters), include_ip))
    lines = [orjson.loads(line) for line in written.splitlines()]
    assert len(lines) == {"all": 13, "skype": 4, "nothing": 0}[
        "all" if filters.service is None else "skype" if filters.service == "skype"
        else "nothing"]
    stored = [flat(row) for rows in store.stream(filters) for row in rows]
    for key, name in (("probe_as_org", "probe_as_org"), ("late_seconds", "late_seconds"),
                      ("attribution_mismatch", "attribution_mismatch")):
        assert [line[key] for line in lines] == [values[name] for values in stored]
    assert [line["upload"]["as_org"] for line in lines] == [v["upload_as_org"] for v in stored]
    assert [line.get("probe_ip") for line in lines] == [
        v["probe_ip"] or None if include_ip else None for v in stored]


@pytest.mark.parametrize("include_ip", [False, True])
def test_csv_is_the_generic_paths_bytes(store: MeasurementStore, include_ip: bool) -> None:
    whatsapp = Filters(service="whatsapp")  # no carriage return in its values
    assert (native(store, whatsapp, "csv", include_ip)
            == b"".join(csv_rows(store.stream(whatsapp), include_ip)))


@pytest.mark.parametrize("include_ip", [False, True])
def test_csv_reads_back_the_stored_values(store: MeasurementStore, include_ip: bool) -> None:
    """Every cell, carriage returns included, as a CSV reader reads it."""
    written = native(store, Filters(), "csv", include_ip).decode()
    read = list(csv.reader(io.StringIO(written, newline="")))
    expected = [list(COLUMNS)]
    for rows in store.stream(Filters()):
        for row in rows:
            values = flat(row)
            if not include_ip:
                values["probe_ip"] = None
            expected.append(["" if values[name] is None else str(values[name])
                             for name in COLUMNS])
    assert read == expected
    assert read[10][COLUMNS.index("started_at")] == "999-12-31T23:59:59.999Z"
    assert '"carriage\rreturn"' in written
