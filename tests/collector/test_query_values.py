"""Every bad query value is a 4xx, never a 5xx (issue 13): cursors with
non-ASCII digits or beyond 64 bits, times with extreme UTC offsets or years
that overflow once converted to UTC."""

from __future__ import annotations

import httpx
import pytest

CURSORS = ["²", "٣", "\U0001d7d9", "9" * 19, "9" * 40, "-1", "1e3", " 1", "0x1f", "1_000"]
TIMES = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
         "0001-01-01T00:00:00+00:01", "2016-01-07T00:00:00+24:00",
         "٢٠١٦-01-07T00:00:00Z", "99999-01-01T00:00:00Z",
         "2016-13-01T00:00:00Z", "2016-01-07", "2016-01-07T00:00:00"]


@pytest.mark.parametrize("cursor", CURSORS)
def test_bad_cursors_are_400(http: httpx.Client, cursor: str) -> None:
    response = http.get("/api/v1/measurements", params={"cursor": cursor})
    assert 400 <= response.status_code < 500, (cursor, response.text)


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", TIMES)
def test_bad_times_are_4xx(http: httpx.Client, name: str, value: str) -> None:
    for path, extra in (("/api/v1/measurements", {}), ("/api/v1/export", {"format": "csv"}),
                        ("/api/v1/export", {"format": "parquet"})):
        response = http.get(path, params={name: value, **extra})
        assert 400 <= response.status_code < 500, (path, value, response.text)


def test_good_values_still_work(http: httpx.Client) -> None:
    assert http.get("/api/v1/measurements", params={"cursor": "0"}).status_code == 200
    assert http.get("/api/v1/measurements", params={
        "since": "2016-01-07T00:00:00+01:00", "until": "2016-01-08T00:00:00Z"}).status_code == 200
    # RFC 3339 allows any number of fraction digits
    assert http.get("/api/v1/measurements", params={
        "since": "2016-01-07T00:00:00.99999999999Z"}).status_code == 200
