"""Registration (issue 13): an enrollment token by default whenever the
collector listens on a non-loopback address; new keys per address limited,
IPv6 by /64; one key registered many times at once answered once, never 5xx;
a token's last use taken once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, database_url
from tests.collector.harness import Collector

PATH = "/api/v1/probes"


def test_token_required_by_default_off_loopback(tmp_path: Path) -> None:
    with Collector(tmp_path / "c", None, ["--host", "0.0.0.0"]) as collector:
        url = collector.url.replace("0.0.0.0", "127.0.0.1")
        key = ProbeKey.generate()
        response = httpx.post(url + PATH, json={"public_key": key.public_b64})
        assert (response.status_code, response.json()["error"]) == (401, "token_required")
        token = collector.cli("token", "create", "--uses", "1", check=True).stdout.strip()
        ok = httpx.post(url + PATH, json={"public_key": key.public_b64, "token": token})
        assert ok.status_code == 201
        spent = httpx.post(url + PATH, json={"public_key": ProbeKey.generate().public_b64,
                                             "token": token})
        assert (spent.status_code, spent.json()["error"]) == (403, "bad_token")


def test_new_keys_per_address_counted_by_ipv6_prefix(tmp_path: Path) -> None:
    env = {**os.environ, "VOIPWATCH_COLLECTOR_REGISTER_RATE_PER_HOUR": "3"}
    with Collector(tmp_path / "c", None, ["--forwarded-allow-ips", "127.0.0.1"],
                   env=env) as collector, collector.client() as http:
        def register(address: str, key: ProbeKey | None = None) -> int:
            key = key or ProbeKey.generate()
            return http.post(PATH, json={"public_key": key.public_b64},
                             headers={"X-Forwarded-For": address}).status_code

        first = ProbeKey.generate()
        assert [register("2001:db8:1:2::1", first), register("2001:db8:1:2::2"),
                register("2001:db8:1:2:ffff::3")] == [201, 201, 201]
        assert register("2001:db8:1:2::99") == 429  # same /64: a fourth new key
        assert register("2001:db8:1:3::1") == 201  # another /64
        assert register("198.51.100.7") == 201


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_key_registered_at_once_is_answered_once(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with Collector(tmp_path / "c", database_url(backend, request),
                   ["--workers", "2"]) as collector:
        key = ProbeKey.generate()

        def register(_: int) -> int:
            return httpx.post(collector.url + PATH, json={"public_key": key.public_b64},
                              timeout=30).status_code

        for _round in range(2):  # 2 x 8 stays within the per-address burst
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(register, range(8)))
            assert sorted(statuses) == [200] * 7 + [201], statuses
            key = ProbeKey.generate()


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_registrations_cannot_pass_the_limit_together(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """New keys from one address at once, on two workers: each worker's first
    filter and the shared count read before the key is made let them all
    through; the count made in the transaction that creates a key stops them
    at the limit."""
    env = {**os.environ, "VOIPWATCH_COLLECTOR_REGISTER_RATE_PER_HOUR": "5"}
    with Collector(tmp_path / "c", database_url(backend, request), ["--workers", "2"],
                   env=env) as collector:
        def register(_: int) -> httpx.Response:
            return httpx.post(collector.url + PATH,
                              json={"public_key": ProbeKey.generate().public_b64}, timeout=30)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(register, range(16)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 5 + [429] * 11, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 429} == {"rate_limited"}
