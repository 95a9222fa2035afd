"""collector/translog.py against the real databases: the leaves that proofs
and `/api/v1/log/leaves` serve are read fast (started_at's text rewritten,
orjson for the RFC 8785 form) and must be, byte for byte, the leaves whose
hashes ingest entered in the log (`leaf_of_row`), whatever the row holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.db.engine import make_engine
from collector.db.migrate import upgrade
from collector.db.schema import log_redactions, measurements
from collector.identity import load_or_create
from collector.translog import LEAF_COLUMNS, TransLog, leaf_of_row
from probe.core.evidence import leaf_bytes
from tests.collector.conftest import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_served_leaves_are_the_leaves_ingest_hashed(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    engine = make_engine(database_url(backend, request) or f"sqlite:///{tmp_path}/c.sqlite3")
    upgrade(engine)
    moments = [datetime(2016, 1, 5, 9, 0, tzinfo=UTC),
               datetime(2016, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
               datetime(999, 12, 31, 1, 2, 3, 4, tzinfo=UTC),  # strftime writes 999, not 0999
               datetime(2016, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5)))]
    values = [("whatsapp", "cellular", "MA", 36903, "control", None),
              ("skype-é", "wifi", None, None, None, "cellular"),
              ("電話📞", "fixed", "DZ", 4_294_967_295, "", "fixed"),
              ('quote"back\\slash\u2028', "cellular", "MA", 0, "local", "unknown")]
    rows = [{"id": str(uuid.uuid4()), "key_id": f"k{n}", "service": service,
             "check_name": "stun", "role": "call", "transport": "udp",
             "endpoint_host": "203.0.113.7", "endpoint_port": 3478, "verdict": "blocked",
             "link_type": link, "cc": cc, "asn": asn, "attribution": attribution,
             "upstream": upstream, "started_at": moment, "received_at": moment,
             "record": "{}", "record_sha256": f"{n:064x}", "log_index": n}
            for n, ((service, link, cc, asn, attribution, upstream), moment)
            in enumerate(zip(values * 2, moments * 2, strict=True))]
    with engine.begin() as conn:
        conn.execute(sa.insert(measurements), rows[:5] + rows[6:])
        conn.execute(sa.insert(log_redactions), [{"log_index": 5, "leaf_hash": b"\x01" * 32,
                                                  "redacted_at": moments[0]}])
        reference = {int(row.log_index): leaf_bytes(leaf_of_row(row)) for row in conn.execute(
            sa.select(*LEAF_COLUMNS))}
    served = list(TransLog(engine, load_or_create(tmp_path)).leaves(0, 8, chunk=3))
    assert [index for index, _, _ in served] == list(range(8))
    assert [(index, text) for index, text, _ in served if index != 5] == sorted(reference.items())
    assert served[5] == (5, None, b"\x01" * 32)
    assert b'"started_at":"999-12-31T01:02:03.000004Z"' in reference[2]
