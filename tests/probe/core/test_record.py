from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from probe.core.record import (
    MAX_DEPTH,
    SCHEMA,
    Blocking,
    Measurement,
    Verdict,
    deeper_than,
    parse_rfc3339,
    rfc3339,
)


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


@pytest.mark.parametrize("text,expected", [
    ("2016-01-07T09:30:00.000Z", datetime(2016, 1, 7, 9, 30, tzinfo=UTC)),
    ("2016-01-07T09:30:00Z", datetime(2016, 1, 7, 9, 30, tzinfo=UTC)),
    ("2016-01-07T10:30:00.5+01:00", datetime(2016, 1, 7, 9, 30, 0, 500000, tzinfo=UTC)),
    ("2016-01-07T09:30:00.123456789Z", datetime(2016, 1, 7, 9, 30, 0, 123456, tzinfo=UTC)),
])
def test_started_at_takes_rfc3339_with_a_zone(text: str, expected: datetime) -> None:
    assert make(started_at=text).started_at == expected
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("value,problem", [
    # pydantic's lax mode reads these as a Unix time: the exporters and the verifier did not
    ("1795958016", "a Unix time is not accepted"),
    ("1795958016.5", "a Unix time is not accepted"),
    (1795958016, "not a number"),
    (1795958016.5, "not a number"),
    (True, "not a boolean"),
    (None, "not null"),
    ({"t": 1}, "not an object"),
    # forms pydantic takes and datetime.fromisoformat (probe.core.evidence) does not, or
    # that are no RFC 3339 date-time
    ("2016-01-07T09:30:00.000z", "the form is"),
    ("2016-01-07T09:30:00+0100", "the form is"),
    ("2016-01-07 09:30:00Z", "the form is"),
    ("2016-01-07T09:30Z", "the form is"),
    ("2016-01-07", "the form is"),
    ("2016-01-07T09:30:00", "the form is"),  # no time zone
    ("\u0662\u0660\u0661\u0666-01-07T09:30:00Z", "the form is"),  # ASCII digits only
    ("2016-02-30T09:30:00Z", "no such date and time"),
    ("2016-01-07T23:59:60Z", "no such date and time"),
    ("0001-01-01T00:00:00+01:00", "no such date and time"),  # before year 1 in UTC
])
def test_started_at_refuses_anything_else(value: object, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make(started_at=value)
    (error,) = caught.value.errors()
    assert error["loc"] == ("started_at",)
    assert "RFC 3339 time with a time zone" in error["msg"] and problem in error["msg"]


def test_a_probe_still_builds_records_from_datetimes() -> None:
    moment = datetime(2016, 1, 7, 9, 30, tzinfo=UTC)
    record = Measurement.model_validate({**make().model_dump(by_alias=True),
                                         "started_at": moment})
    assert record.started_at == moment
    assert record.to_json_dict()["started_at"] == "2016-01-07T09:30:00.000Z"


@pytest.mark.parametrize("overrides", [
    {"runtime_ms": "10"}, {"runtime_ms": 10.0}, {"runtime_ms": True},
    {"endpoint": {"check": "tcp", "host": "h", "port": "443", "transport": "tcp",
                  "role": "call"}},
    {"network": {"link_type": "adsl", "asn": "6713"}},
    {"network": {"link_type": "adsl", "asn": True}},
    {"network": {"link_type": "adsl", "resolver_asn": 6713.0}},
])
def test_integers_are_json_integers(overrides: dict[str, Any]) -> None:
    """Lax mode took "10", 10.0 and true: the stored record still says so, and
    the log's leaf (from the model) and the record (read again) then differ."""
    with pytest.raises(ValidationError, match="valid integer"):
        make(**overrides)
    ok = make(runtime_ms=10, network={"link_type": "adsl", "asn": 6713, "resolver_asn": None})
    assert (ok.runtime_ms, ok.network.asn) == (10, 6713)


def test_depth_is_counted_from_the_record() -> None:
    assert not deeper_than({}, 1) and deeper_than({"a": {}}, 1)
    assert not deeper_than({"a": [[]]}, 3) and deeper_than({"a": [[{}]]}, 3)
    assert not deeper_than("text", 0)
    nested: Any = 1
    for _ in range(100_000):  # any depth, without recursion
        nested = [nested]
    assert deeper_than({"evidence": nested})
    record = make().to_json_dict()
    record["evidence"] = {"d": nested_list(MAX_DEPTH - 2)}
    assert not deeper_than(record)  # record 1, evidence 2, then MAX_DEPTH - 2 arrays
    record["evidence"] = {"d": nested_list(MAX_DEPTH - 1)}
    assert deeper_than(record)


def nested_list(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value
