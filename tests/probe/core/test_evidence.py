"""probe.core.evidence on records a collector stored before ingest held
`started_at` to RFC 3339: a clear problem of that record, never an exception
out of the verifier."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from probe.core.evidence import LeafFilter, leaf_problems, parse_time, record_claims

LEAF_TIME = "2026-11-29T13:13:36.000000Z"


def record(started_at: Any) -> dict[str, Any]:
    return {"schema": "voipwatch.measurement/1", "id": "1d200d37-8f14-44d7-956a-97c22e22578a",
            "started_at": started_at, "runtime_ms": 12,
            "probe": {"key_id": "a" * 64, "software_version": "0.1.0"},
            "network": {"link_type": "cellular"}, "service": "chat",
            "endpoint": {"check": "tcp", "host": "h", "port": 443, "transport": "tcp",
                         "role": "call"},
            "verdict": "open", "blocking": None, "evidence": {}}


def leaf_of_collector(started_at: str = LEAF_TIME) -> dict[str, Any]:
    """The leaf a collector filed the record under (its started_at column)."""
    claims = record_claims(record("2016-01-07T09:30:00.000Z"))
    return {**claims, "started_at": started_at, "record_sha256": "0" * 64, "cc": None,
            "asn": None, "attribution": "none"}


def test_parse_time_says_why_and_raises_nothing_else() -> None:
    assert parse_time("2016-01-07T09:30:00.000Z") == datetime(2016, 1, 7, 9, 30, tzinfo=UTC)
    for value, why in (("1795958016", "is not an RFC 3339 time"), (1795958016, "not a time"),
                       (None, "not a time"), ("2016-01-07T09:30:00", "has no time zone"),
                       ("x" * 500, "is not an RFC 3339 time")):
        with pytest.raises(ValueError, match=why) as caught:
            parse_time(value)
        assert len(str(caught.value)) < 120  # what it quotes is cut short


@pytest.mark.parametrize("started_at", ["1795958016", 1795958016, "0001-01-01T00:00:00+01:00",
                                        "2016-01-07T09:30:00z", [1]])
def test_a_malformed_started_at_is_a_problem_of_the_record(started_at: Any) -> None:
    bad = record(started_at)
    assert record_claims(bad)["started_at"] is None
    problems = leaf_problems(leaf_of_collector(), bad)
    assert len(problems) == 1
    assert problems[0].startswith(f"started_at {started_at!r} in the record is not an "
                                  "RFC 3339 time with a time zone")
    assert LEAF_TIME in problems[0]


def test_a_well_formed_record_matches_its_leaf() -> None:
    good = record("2016-01-07T10:30:00.000+01:00")
    assert record_claims(good)["started_at"] == "2016-01-07T09:30:00.000000Z"
    assert leaf_problems(leaf_of_collector("2016-01-07T09:30:00.000000Z"), good) == []
    problems = leaf_problems(leaf_of_collector(), good)
    assert problems == [f"started_at is {LEAF_TIME!r} in the log, "
                        "'2016-01-07T09:30:00.000000Z' in the record"]
    assert leaf_problems({**leaf_of_collector(), "started_at": None}, record(None)) == []


def test_a_time_filter_skips_a_leaf_without_a_time() -> None:
    since = LeafFilter(since=datetime(2016, 1, 1, tzinfo=UTC))
    assert since.matches(leaf_of_collector())
    for value in (None, "garbage", 17):
        assert not since.matches({**leaf_of_collector(), "started_at": value})
