"""Attribution: which country and network the measured link belongs to, learnt
at the start of a pass (and again after a route change) and signed into every
record (`network.cc/asn/as_org/resolver_asn/attribution`, docs/evidence.md).

Sources, in order:
- `local`: the user gave `.mmdb` files (`--geoip-country/--geoip-asn`, or the
  config). The probe needs its public address for them: it asks the test
  helper to echo the address it sees on this link (`echo=true`), and looks
  it up here; the helper answers, it does not keep it.
- `control`: the test helper looks up the address this very request came
  from (`GET /api/v1/attribution`) and answers `{cc, asn, as_org}`.
- `none`: neither worked (no helper, helper unreachable): all null.

The resolver's AS (`resolver_asn`): the address a recursive resolver uses
towards the internet is what identifies it. The probe learns it when the
collector serves a whoami zone (`whoami_zone` in `GET /api/v1/collector`): it
resolves a random name under it through the measured resolver, and the
collector's DNS server answers with the address the query came from.
Without one, the configured resolver's own address counts when it is public
(an ISP's or a public resolver); a home router's private address proves
nothing about the network behind it, so `resolver_asn` is then null.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from probe.core.auth import sign_request
from probe.core.errors import DnsError, Failed, UserError
from probe.core.record import Attribution
from probe.core.signing import ProbeKey
from probe.dns.query import query_addresses, system_nameservers
from probe.run.network import AttributionFacts

log = logging.getLogger(__name__)

PATH = "/api/v1/attribution"
COLLECTOR_PATH = "/api/v1/collector"
TIMEOUT = 5.0


def is_public(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_global
    except ValueError:
        return False


@dataclass
class LocalGeoip:
    """The user's own `.mmdb` files (MaxMind GeoLite2/DB-IP layouts)."""

    country: Any = None
    asn: Any = None

    @classmethod
    def open(cls, country: Path | None, asn: Path | None) -> LocalGeoip:
        return cls(_reader(country, "--geoip-country") if country else None,
                   _reader(asn, "--geoip-asn") if asn else None)

    def lookup(self, address: str) -> tuple[str | None, int | None, str | None]:
        cc = number = org = None
        if self.country is not None:
            found = _get(self.country, address)
            country = found.get("country") or found.get("registered_country") or {}
            code = country.get("iso_code") if isinstance(country, dict) else None
            cc = code if isinstance(code, str) and len(code) == 2 else None
        if self.asn is not None:
            found = _get(self.asn, address)
            value = found.get("autonomous_system_number")
            number = value if isinstance(value, int) else None
            name = found.get("autonomous_system_organization")
            org = name if isinstance(name, str) else None
        return cc, number, org


def _reader(path: Path, flag: str) -> Any:
    import maxminddb

    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file")
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise UserError(f"{flag} {path}: not a readable MaxMind .mmdb file ({exc})") from exc


def _get(reader: Any, address: str) -> dict[str, Any]:
    try:
        found = reader.get(address)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class Attributor:
    """Learns the attribution of the link a pass runs on; `learn` never raises."""

    def __init__(self, control_url: str | None, key: ProbeKey | None,
                 local: LocalGeoip | None = None,
                 resolver: tuple[str, int] | None = None) -> None:
        self.control_url = control_url.rstrip("/") if control_url else None
        self.key = key
        self.local = local
        self.resolver = resolver

    async def learn(self) -> AttributionFacts:
        if self.control_url is None:
            return AttributionFacts()
        import h11

        from probe.dns.resolve import resolve_host

        try:
            host = urlsplit(self.control_url).hostname or ""
            address = await resolve_host(host, self.resolver, TIMEOUT)
            resolver_address = await self._resolver_address(address)
            answer = await self._ask(address, resolver_address)
        except (Failed, OSError, ssl.SSLError, TimeoutError, h11.ProtocolError, ValueError,
                KeyError, TypeError) as exc:
            log.warning("attribution: the test helper did not answer (%s)", type(exc).__name__)
            return AttributionFacts()
        resolver_asn = None
        if self.local is not None:
            seen = answer.get("address")
            if not isinstance(seen, str) or not is_public(seen):
                return AttributionFacts()  # behind a private address only: nothing to look up
            cc, asn, org = self.local.lookup(seen)
            if resolver_address is not None:
                resolver_asn = self.local.lookup(resolver_address)[1]
            return AttributionFacts(cc, asn, org, resolver_asn, Attribution.LOCAL)
        if resolver_address is not None:
            resolver_asn = _int((answer.get("resolver") or {}).get("asn"))
        cc = answer.get("cc")
        return AttributionFacts(cc if isinstance(cc, str) and len(cc) == 2 else None,
                                _int(answer.get("asn")), _text(answer.get("as_org")),
                                resolver_asn, Attribution.CONTROL)

    async def _get(self, address: str, path: str, query: dict[str, str],
                   signed: bool) -> dict[str, Any]:
        """GET a JSON object from the helper (probe.net.http: one request, counted)."""
        from probe.checks.base import default_ssl_context
        from probe.net.http import request

        full = urlsplit(str(self.control_url)).path.rstrip("/") + path
        headers = sign_request(self.key, "GET", full, b"") if signed and self.key else {}
        url = f"{self.control_url}{path}" + (f"?{urlencode(query)}" if query else "")
        response = await request("GET", url, address, headers=headers,
                                 deadline=time.monotonic() + TIMEOUT,
                                 ssl_context=default_ssl_context)
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        body = json.loads(response.body)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        return body

    async def _ask(self, address: str, resolver_address: str | None) -> dict[str, Any]:
        query: dict[str, str] = {}
        if self.local is not None:
            query["echo"] = "true"
        if resolver_address is not None and self.local is None:
            query["resolver"] = resolver_address
        return await self._get(address, PATH, query, signed=True)

    async def _resolver_address(self, address: str) -> str | None:
        """The measured resolver's public address, or None when it cannot be known."""
        zone = await self._whoami_zone(address)
        if zone:
            name = f"{secrets.token_hex(8)}.{zone}"  # random: no cache answers for another
            try:
                answer = await query_addresses(name, "A", self.resolver, TIMEOUT)
            except DnsError as exc:
                log.info("attribution: whoami lookup failed: %s", exc)
            else:
                seen = next((a for a in answer.addresses if is_public(a)), None)
                if seen is not None:
                    return seen
        configured = self.resolver[0] if self.resolver else None
        if configured is None:
            try:
                servers = system_nameservers()
            except DnsError:
                servers = []
            configured = servers[0][0] if servers else None
        return configured if is_public(configured) else None

    async def _whoami_zone(self, address: str) -> str | None:
        try:
            zone = (await self._get(address, COLLECTOR_PATH, {}, signed=False)).get("whoami_zone")
        except ValueError:
            return None
        return zone if isinstance(zone, str) and zone else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value[:256] if isinstance(value, str) else None
