from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from probe.core.record import SCHEMA, Blocking, Measurement, Verdict, rfc3339


def make(**overrides: Any) -> Measurement:
    data = {
        "schema": SCHEMA, "started_at": "2016-01-07T09:30:00.000Z", "runtime_ms": 10,
        "probe": {"key_id": "a" * 64, "software_version": "0.1.0"},
        "network": {"link_type": "adsl"}, "service": "viber",
        "endpoint": {"check": "tcp", "host": "h", "port": 443, "transport": "tcp",
                     "role": "messaging"},
        "verdict": "open", "blocking": None, "evidence": {},
    }
    data.update(overrides)
    return Measurement.model_validate(data)


def test_a_new_record_gets_a_uuid7_and_a_uuid4_is_still_valid() -> None:
    assert uuid.UUID(make().to_json_dict()["id"]).version == 7
    old = str(uuid.uuid4())  # from probes before UUIDv7
    assert make(id=old).to_json_dict()["id"] == old


def test_valid_record_and_json_form() -> None:
    record = make(id=str(uuid.uuid4()), future_field={"kept": True})
    data = record.to_json_dict()
    assert data["schema"] == "voipwatch.measurement/1"
    assert data["started_at"] == "2016-01-07T09:30:00.000Z"
    assert data["future_field"] == {"kept": True}
    assert data["blocking"] is None


@pytest.mark.parametrize("field,value", [
    ("verdict", "censored"), ("blocking", "dns.lies"), ("schema", "voipwatch.measurement/2"),
    ("service", "Whats App"), ("runtime_ms", -1),
])
def test_closed_sets_reject_unknown_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        make(**{field: value})


def test_link_type_and_endpoint_are_closed() -> None:
    with pytest.raises(ValidationError):
        make(network={"link_type": "5g"})
    with pytest.raises(ValidationError):
        make(endpoint={"check": "ping", "host": "h", "port": 1, "transport": "udp",
                       "role": "call"})


def test_enums_match_documentation() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "measurement.md").read_text()
    for value in [*Blocking, *Verdict]:
        assert f"`{value.value}`" in doc, f"{value.value} is not documented"


def test_rfc3339_is_utc_millis() -> None:
    moment = datetime(2016, 11, 4, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(moment) == "2016-11-04T00:02:03.456Z"
    assert rfc3339(datetime(2016, 1, 1, tzinfo=UTC)) == "2016-01-01T00:00:00.000Z"
    with pytest.raises(ValueError):
        rfc3339(datetime(2016, 1, 1))
